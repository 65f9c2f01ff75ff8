"""Helpers (the `task` tool) with a real client: parallel helpers whose answers reach the
parent, read-only refusals, bad arguments, budgets that stop a looping or hanging helper (or
one whose tool never answers), worktrees, cancel, labelled approvals (TUI, headless), memory
conflicts, a helper's conversation (listed, watched, refused a message), resuming.

The model is the fake behind a real server (the official SDK on the wire); the client is a
real session in a real git repository, answering approvals through a RecordingListener.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from cairn_client.api import CairnApi
from cairn_client.headless import HeadlessListener, run_headless
from cairn_client.policy.policy import Policy
from cairn_client.policy.settings import PolicySettings
from cairn_client.policy.types import Approval
from cairn_client.tui.app import CairnApp
from cairn_client.tui.screens.approval import ApprovalScreen
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import (
    AssistantMessage,
    ErrorEvent,
    RunFinished,
    ToolRequest,
    ToolWithdrawn,
    Welcome,
)
from support.listener import RecordingListener
from support.repos import run_git
from support.servers import TEST_TOKEN, Served, cairn_server, call, script, sqlite_url
from support.sessions import client_session, one_request, sessions_for, welcomed
from support.settings import policy_for
from support.tui import chat_entries, rendered_text, status_text
from support.waiting import until
from textual.widgets import Input


def task(prompt: str, **arguments: Any) -> dict[str, Any]:
    return call("task", prompt=prompt, **arguments)


def readme_helper(helper_answer: str, parent_answer: str) -> tuple[dict[str, Any], ...]:
    """The model's turns: the parent starts one helper, which reads the README and answers;
    then the parent answers."""
    return (
        {"tool_calls": [task("Read the README")]},
        {"tool_calls": [call("read", path="README.md")]},
        {"text": helper_answer},
        {"text": parent_answer},
    )


def tool_results(served: Served) -> list[str]:
    """The tool results the parent's model read in its last request."""
    messages = served.fake.requests[-1].body["messages"]
    return [m["content"] for m in messages if m["role"] == "tool"]


def helper_requests(listener: RecordingListener) -> list[ToolRequest]:
    return [e for e in listener.of_type("tool_request") if isinstance(e, ToolRequest) and e.helper]


def asking(*rules: str) -> Policy:
    return policy_for(PolicySettings(ask=list(rules)))


async def test_two_helpers_run_side_by_side_and_their_answers_reach_the_parent(
    served: Served, own_repo: Path
) -> None:
    served.fake.set_script(
        script(
            {"tool_calls": [task("Summarise src/app.py"), task("Summarise src/util.py")]},
            {"tool_calls": [call("read", path="src/app.py")]},
            {"tool_calls": [call("read", path="src/util.py")]},
            {"text": "first helper's answer"},
            {"text": "second helper's answer"},
            {"text": "Both summarised."},
        )
    )
    listener = RecordingListener([Approval("once"), Approval("once")])
    listener.hold_approvals.clear()  # the person thinks until both helpers wait on a read
    session = client_session(served.url, own_repo, listener, asking("read"))
    async with welcomed(session, listener):
        await session.send_user_message("Summarise both files with helpers")
        # Both helpers wait on the person at once: they run side by side, not one after another.
        await listener.wait_for(lambda: len(listener.asked) == 2)
        listener.hold_approvals.set()
        await listener.wait_for(lambda: bool(listener.of_type("run_finished")))
    labels = {r.helper.label for r in helper_requests(listener) if r.helper}
    assert labels == {"helper 1", "helper 2"}
    assert {r.helper.label for r in (p.request for p in listener.asked) if r.helper} == labels
    finished = listener.of_type("run_finished")[0]
    assert isinstance(finished, RunFinished) and finished.stop_reason == "end_turn"
    results = tool_results(served)
    assert len(results) == 2
    assert "helper 1" in results[0] and "helper 2" in results[1]
    answers = "".join(results)
    assert "first helper's answer" in answers and "second helper's answer" in answers
    # The parent's context holds the answers, never the files the helpers read.
    assert "def total(items)" not in json.dumps(served.fake.requests[-1].body)


async def test_a_read_only_helper_is_refused_an_edit_and_the_model_reads_why(
    served: Served, own_repo: Path
) -> None:
    edit = call("edit", path="src/app.py", old_string="return 1", new_string="return 2")
    served.fake.set_script(
        script(
            {"tool_calls": [task("Fix total in src/app.py")]},
            {"tool_calls": [edit]},
            {"text": "I could not edit: change return 1 to return 2."},
            {"text": "The helper says what to change."},
        )
    )
    listener = RecordingListener()
    before = len(served.fake.requests)
    finished = await one_request(
        client_session(served.url, own_repo, listener), listener, "Fix it with a helper"
    )
    assert finished.stop_reason == "end_turn"
    helper_saw = served.fake.requests[before + 2].body["messages"][-1]["content"]
    assert "read-only" in helper_saw and "edit is refused" in helper_saw
    assert (own_repo / "src/app.py").read_text().count("return 1") == 1
    assert not helper_requests(listener)  # the refusal never reached the client
    assert "change return 1 to return 2" in tool_results(served)[0]


async def test_bad_task_arguments_get_one_clear_line_each(served: Served, own_repo: Path) -> None:
    served.fake.set_script(
        script(
            {
                "tool_calls": [
                    task("   "),
                    task("look", tools=["read", "teleport"]),
                    task("look", tools=["task"]),
                    task("fix", tools=["edit"]),
                    task("look", max_steps=0),
                ]
            },
            {"text": "All refused."},
        )
    )
    listener = RecordingListener()
    before = len(served.fake.requests)
    await one_request(client_session(served.url, own_repo, listener), listener, "helpers")
    blank, unknown, recursive, editing, steps = tool_results(served)
    assert "prompt is blank" in blank
    assert "unknown tool for a helper: 'teleport'" in unknown
    assert "cannot start helpers" in recursive
    assert "may_edit=true" in editing
    assert "max_steps" in steps
    assert all(text.startswith("Error:") and "\n" not in text for text in [unknown, editing])
    assert len(served.fake.requests) - before == 2  # no helper ever called the model


async def test_a_looping_helper_is_stopped_by_its_step_budget(
    served: Served, own_repo: Path
) -> None:
    read = {"tool_calls": [call("read", path="README.md")]}
    served.fake.set_script(
        script(
            {"tool_calls": [task("Read the README forever", max_steps=3)]},
            read,
            read,
            read,
            {"text": "The helper looped."},
        )
    )
    listener = RecordingListener()
    before = len(served.fake.requests)
    finished = await one_request(client_session(served.url, own_repo, listener), listener, "loop")
    assert finished.stop_reason == "end_turn"
    result = tool_results(served)[0]
    assert "helper 1" in result and "was stopped" in result
    assert "step budget of 3 model calls" in result
    assert len(helper_requests(listener)) == 3
    assert len(served.fake.requests) - before == 5  # the parent twice, the helper three times


async def test_a_hanging_model_is_stopped_by_the_time_budget(
    served: Served, own_repo: Path
) -> None:
    served.fake.set_script(
        script(
            {"tool_calls": [task("Think for ever", max_seconds=1)]},
            {"text": "never seen", "delay_s": 600},
            {"text": "The helper hung."},
        )
    )
    listener = RecordingListener()
    finished = await one_request(client_session(served.url, own_repo, listener), listener, "hang")
    assert finished.stop_reason == "end_turn"
    result = tool_results(served)[0]
    assert "was stopped: its time budget of 1 s was spent" in result
    assert "It gave no answer" in result


async def test_cancelling_the_parent_cancels_its_helpers(served: Served, own_repo: Path) -> None:
    served.fake.set_script(
        script(
            {"tool_calls": [task("Read app"), task("Read util")]},
            {"tool_calls": [call("read", path="src/app.py")]},
            {"tool_calls": [call("read", path="src/util.py")]},
        )
    )
    listener = RecordingListener()
    listener.hold_approvals.clear()
    session = client_session(served.url, own_repo, listener, asking("read"))
    async with welcomed(session, listener):
        await session.send_user_message("two helpers, then cancel")
        await listener.wait_for(lambda: len(listener.asked) == 2)
        await session.cancel()
        await listener.wait_for(lambda: bool(listener.of_type("run_finished")))
        withdrawn = {
            e.call_id for e in listener.of_type("tool_withdrawn") if isinstance(e, ToolWithdrawn)
        }
        listener.hold_approvals.set()
    finished = listener.of_type("run_finished")[0]
    assert isinstance(finished, RunFinished) and finished.stop_reason == "cancelled"
    assert withdrawn == {r.call_id for r in helper_requests(listener)}
    assert not listener.handled or all(o.status != "ok" for _, _, o in listener.handled)


async def test_a_helper_that_may_edit_edits_its_own_worktree_not_the_checkout(
    served: Served, own_repo: Path
) -> None:
    edit = call("edit", path="src/app.py", old_string="return 1", new_string="return 2")
    served.fake.set_script(
        script(
            {"tool_calls": [task("Fix total", tools=["read", "edit"], may_edit=True)]},
            {"tool_calls": [edit]},
            {"text": "Fixed total."},
            {"text": "The fix is on the helper's branch."},
        )
    )
    listener = RecordingListener()
    policy = policy_for(PolicySettings(allow=["edit"]))
    finished = await one_request(
        client_session(served.url, own_repo, listener, policy), listener, "fix with a helper"
    )
    assert finished.stop_reason == "end_turn"
    assert "return 1" in (own_repo / "src/app.py").read_text()  # the checkout is untouched
    result = tool_results(served)[0]
    branch = next(r.helper.worktree_branch for r in helper_requests(listener) if r.helper)
    assert branch is not None and f"branch {branch} in " in result
    assert "src/app.py | 2 +-" in result and "Fixed total." in result
    worktree = Path(result.split(f"branch {branch} in ", 1)[1].split("\n", 1)[0])
    assert "return 2" in (worktree / "src/app.py").read_text()
    assert run_git(own_repo, "status", "--porcelain") == ""


async def test_the_tui_asks_about_a_helpers_edit_with_its_label_and_shows_whose_it_is(
    served: Served, own_repo: Path
) -> None:
    edit = call("edit", path="src/util.py", old_string="tidy", new_string="tidy up")
    served.fake.set_script(
        script(
            {"tool_calls": [task("Tidy util", tools=["edit"], may_edit=True)]},
            {"tool_calls": [edit]},
            {"text": "Tidied."},
            {"text": "The helper tidied util on its branch."},
        )
    )
    app = CairnApp(sessions_for(served.url, own_repo), workspace_name="repo")
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: "connected" in status_text(app))
        app.query_one("#prompt", Input).value = "tidy util with a helper"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ApprovalScreen))
        screen = app.screen
        assert rendered_text(screen.query_one("#approval-title")) == "helper 1: Edit src/util.py"
        scope = rendered_text(screen.query_one("#approval-helper"))
        assert "Asked by helper 1" in scope and "own worktree, branch cairn/helper-" in scope
        await pilot.press("y")
        await until(pilot, lambda: "The helper tidied util" in " ".join(chat_entries(app)))
        lines = chat_entries(app)
    assert '✓ task "Tidy util"' in lines
    assert "✓ helper 1: edit src/util.py (allowed once)" in lines
    assert any(
        line.startswith("✓ helper 1: helper_worktree changes on cairn/helper-") for line in lines
    ), lines
    assert "tidy up" not in (own_repo / "src/util.py").read_text()


async def test_headless_output_says_which_helper_asked(served: Served, own_repo: Path) -> None:
    turns = readme_helper("A demo repository.", "It is a demo.")
    served.fake.set_script(script(*turns, *turns))
    printed = []
    for as_json in (False, True):
        out, err = io.StringIO(), io.StringIO()
        listener = HeadlessListener(as_json=as_json, out=out, err=err)
        session = client_session(served.url, own_repo, listener)
        assert await run_headless(session, listener, "what is it?") == 0
        printed.append((out.getvalue(), err.getvalue()))
    (text_out, text_err), (json_out, _) = printed
    assert "✓ helper 1: Read README.md" in text_err
    assert text_out.strip().endswith("It is a demo.")
    lines = [json.loads(line) for line in json_out.splitlines()]
    handled = next(line for line in lines if line["type"] == "tool_handled")
    assert (handled["tool"], handled["helper"]) == ("read", "helper 1")
    request = next(line for line in lines if line["type"] == "tool_request")
    assert request["helper"]["label"] == "helper 1"


async def test_a_helpers_memory_edit_meets_a_concurrent_edit_as_a_conflict_it_reads(
    served: Served, own_repo: Path
) -> None:
    rethink = call("memory_rethink", label="project", new_value="Tests: make check")
    served.fake.set_script(
        script(
            {
                "tool_calls": [
                    task("Note how to test", tools=["read", "memory_rethink"], may_edit=True)
                ]
            },
            {"tool_calls": [call("read", path="README.md"), rethink]},
            {"text": "Someone else changed it; left as it is."},
            {"text": "Noted."},
        )
    )
    listener = RecordingListener([Approval("once")])
    listener.hold_approvals.clear()
    before = len(served.fake.requests)
    session = client_session(served.url, own_repo, listener, asking("read"))
    async with welcomed(session, listener):
        welcome = listener.of_type("welcome")[0]
        assert isinstance(welcome, Welcome)
        await session.send_user_message("note it with a helper")
        await listener.wait_for(lambda: len(listener.asked) == 1)
        # A person edits the block while the helper's rethink waits behind its read.
        async with CairnApi(served.url, TEST_TOKEN) as api:
            await api.update_block(welcome.agent_id, "project", value="Tests: uv run pytest")
        listener.hold_approvals.set()
        await listener.wait_for(lambda: bool(listener.of_type("run_finished")))
    helper_saw = served.fake.requests[before + 2].body["messages"][-1]["content"]
    assert "nothing was changed" in helper_saw and "Tests: uv run pytest" in helper_saw
    async with CairnApi(served.url, TEST_TOKEN) as api:
        block = await api.get_block(welcome.agent_id, "project")
    assert block.value == "Tests: uv run pytest"  # the person's edit stands


async def test_a_helpers_conversation_is_listed_as_the_parents_and_never_continued_by_default(
    served: Served, own_repo: Path
) -> None:
    served.fake.set_script(
        script(
            {"tool_calls": [task("Say hello")]},
            {"text": "hello"},
            {"text": "It said hello."},
            {"text": "goodbye"},
        )
    )
    listener = RecordingListener()
    await one_request(client_session(served.url, own_repo, listener), listener, "greet")
    welcome = listener.of_type("welcome")[0]
    assert isinstance(welcome, Welcome)
    async with CairnApi(served.url, TEST_TOKEN) as api:
        listed = await api.list_conversations(welcome.agent_id)
    helper = next(c for c in listed if c.parent_id is not None)
    assert helper.parent_id == welcome.conversation_id
    assert helper.title == "helper 1: Say hello"
    # Opened and continued, the helper's conversation is the newest; `latest` is still the
    # person's own.
    followup = RecordingListener()
    opened = client_session(served.url, own_repo, followup, conversation=helper.id)
    assert (await one_request(opened, followup, "and goodbye?")).stop_reason == "end_turn"
    again = RecordingListener()
    async with welcomed(client_session(served.url, own_repo, again), again):
        reopened = again.of_type("welcome")[0]
    assert isinstance(reopened, Welcome) and reopened.conversation_id == welcome.conversation_id


async def test_a_tool_that_never_answers_is_stopped_by_the_time_budget(
    served: Served, own_repo: Path
) -> None:
    served.fake.set_script(
        script(
            {"tool_calls": [task("Read the README", max_seconds=1)]},
            {"text": "Reading first.", "tool_calls": [call("read", path="README.md")]},
            {"text": "The helper waited too long."},
        )
    )
    listener = RecordingListener()
    listener.hold_approvals.clear()  # nobody ever answers the helper's question
    session = client_session(served.url, own_repo, listener, asking("read"))
    async with welcomed(session, listener):
        await session.send_user_message("read it with a helper")
        await listener.wait_for(lambda: bool(listener.of_type("run_finished")))
        withdrawn = listener.of_type("tool_withdrawn")
    finished = listener.of_type("run_finished")[0]
    assert isinstance(finished, RunFinished) and finished.stop_reason == "end_turn"
    assert [w.call_id for w in withdrawn if isinstance(w, ToolWithdrawn)] == [
        r.call_id for r in helper_requests(listener)
    ]
    result = tool_results(served)[0]
    assert "was stopped: its time budget of 1 s was spent" in result
    assert "Its partial answer:\n\nReading first." in result


async def test_a_running_helpers_conversation_is_watched_live_and_takes_no_message(
    served: Served, own_repo: Path
) -> None:
    served.fake.set_script(script(*readme_helper("A demo.", "Done.")))
    listener = RecordingListener([Approval("once")])
    listener.hold_approvals.clear()
    session = client_session(served.url, own_repo, listener, asking("read"))
    async with welcomed(session, listener):
        await session.send_user_message("read it with a helper")
        await listener.wait_for(lambda: len(listener.asked) == 1)
        helper = listener.asked[0].request.helper
        assert helper is not None
        other = RecordingListener()
        opened = client_session(served.url, own_repo, other, conversation=helper.conversation_id)
        async with welcomed(opened, other):
            await opened.send_user_message("what are you doing?")
            await other.wait_for(lambda: bool(other.of_type("error")))
            listener.hold_approvals.set()
            # Who opens a running helper's conversation watches it live, read-only.
            await other.wait_for(lambda: bool(other.of_type("run_finished")))
        await listener.wait_for(lambda: bool(listener.of_type("run_finished")))
    refused = other.of_type("error")[0]
    assert isinstance(refused, ErrorEvent) and refused.code == "run_in_progress"
    assert "a helper is running in this conversation" in refused.message
    watched = [e for e in other.events if isinstance(e, AssistantMessage)]
    assert [m.text for m in watched][-1] == "A demo."
    assert not other.handled  # the parent's client ran the helper's read, not this one
    assert "A demo." in tool_results(served)[0]


async def test_a_helpers_budget_is_capped_by_what_its_parent_has_left(
    tmp_path: Path, fake_model: FakeModelServer, own_repo: Path
) -> None:
    read = {"tool_calls": [call("read", path="README.md")]}
    fake_model.set_script(
        script({"tool_calls": [task("Read for ever", max_steps=50)]}, read, read, read, read)
    )
    listener = RecordingListener()
    with cairn_server(sqlite_url(tmp_path), fake_model, step_limit=3) as server:
        finished = await one_request(
            client_session(server.url, own_repo, listener), listener, "loop"
        )
    # The parent's first model call leaves it 2 of its 3: the helper gets those, not 50.
    assert len(helper_requests(listener)) == 2
    parent_read = fake_model.requests[3].body["messages"][-1]["content"]
    assert "step budget of 2 model calls was spent" in parent_read
    assert finished.stop_reason == "step_limit"  # and the parent then used its last one


async def test_parallel_helpers_over_the_anthropic_api(
    tmp_path: Path, fake_model: FakeModelServer, own_repo: Path
) -> None:
    fake_model.set_script(
        script(
            {"tool_calls": [task("Read app"), task("Read util")]},
            {"tool_calls": [call("read", path="src/app.py")]},
            {"tool_calls": [call("read", path="src/util.py")]},
            {"text": "app answer"},
            {"text": "util answer"},
            {"text": "Both read."},
        )
    )
    listener = RecordingListener()
    with cairn_server(sqlite_url(tmp_path), fake_model, provider="anthropic") as server:
        finished = await one_request(
            client_session(server.url, own_repo, listener), listener, "two helpers"
        )
    assert finished.stop_reason == "end_turn"
    last = fake_model.requests[-1].body["messages"][-1]["content"]
    results = [block for block in last if block["type"] == "tool_result"]
    assert len(results) == 2  # both answers in the one user turn the Messages API requires
    assert "app answer" in json.dumps(results) and "util answer" in json.dumps(results)


async def test_a_cairn_that_resumes_the_parents_run_takes_over_its_helpers_requests(
    served: Served, own_repo: Path
) -> None:
    served.fake.set_script(script(*readme_helper("A demo.", "Done.")))
    gone = RecordingListener()
    gone.hold_approvals.clear()  # this cairn is closed while its person thinks
    first = client_session(served.url, own_repo, gone, asking("read"))
    async with welcomed(first, gone):
        await first.send_user_message("read it with a helper")
        await gone.wait_for(lambda: len(gone.asked) == 1)
    back = RecordingListener([Approval("once")])
    second = client_session(served.url, own_repo, back, asking("read"))
    async with welcomed(second, back):
        welcome = back.of_type("welcome")[0]
        assert isinstance(welcome, Welcome)
        await back.wait_for(lambda: bool(back.of_type("run_finished")))
    waiting = welcome.pending_tool_requests
    assert [(r.tool, r.helper.label if r.helper else None) for r in waiting] == [
        ("read", "helper 1")
    ]
    assert waiting[0].executor == welcome.client_id  # handed over to the cairn that came back
    assert [p.request.helper.label for p in back.asked if p.request.helper] == ["helper 1"]
    assert "A demo." in tool_results(served)[0]
