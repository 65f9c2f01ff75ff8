"""The real Textual app, the real session and tools, the real server, a scripted model.

A request typed in the TUI becomes an approved edit on disk; a denial and an interrupt reach
the model (an interrupted command is killed and reported as such); a request another client
started is only shown; a killed connection is shown and recovered from.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from cairn_client.api import CairnApi
from cairn_client.tui.app import CairnApp
from cairn_client.tui.screens.approval import ApprovalScreen
from cairn_fakes.runner import FakeModelServer
from support.cli import cairn
from support.repos import APP_AFTER, APP_BEFORE, run_git
from support.servers import TEST_TOKEN, cairn_server, call, model_env, script, sqlite_url
from support.sessions import sessions_for
from support.tui import chat_entries, rendered_text, status_text
from support.waiting import until
from textual.pilot import Pilot
from textual.widgets import Input

EDIT = call("edit", path="app.py", old_string="return 1", new_string="return sum(items)")
GREP_READ_EDIT = (
    {"text": "Searching.", "tool_calls": [call("grep", pattern="TODO")]},
    {"text": "Reading.", "tool_calls": [call("read", path="app.py")]},
    {"text": "Fixing.", "tool_calls": [EDIT]},
    {"text": "total() now adds up."},
)


@asynccontextmanager
async def running_app(server_url: str, repo: Path) -> AsyncIterator[tuple[CairnApp, Pilot[Any]]]:
    app = CairnApp(sessions_for(server_url, repo), workspace_name="repo")
    async with app.run_test(size=(110, 36)) as pilot:
        await until(pilot, lambda: "connected" in status_text(app))
        yield app, pilot


@asynccontextmanager
async def served_app(
    tmp_path: Path, fake_model: FakeModelServer, repo: Path
) -> AsyncIterator[tuple[CairnApp, Pilot[Any]]]:
    """A real server on a fresh database in `tmp_path`, and the app connected to it."""
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        async with running_app(server.url, repo) as (app, pilot):
            yield app, pilot


@asynccontextmanager
async def edit_awaiting_approval(
    tmp_path: Path, fake_model: FakeModelServer, repo: Path, answer: str
) -> AsyncIterator[tuple[CairnApp, Pilot[Any]]]:
    """The app on its approval screen for the scripted EDIT ("fix it"); `answer` is what the
    model says after the edit's result."""
    fake_model.set_script(script({"tool_calls": [EDIT]}, {"text": answer}))
    async with served_app(tmp_path, fake_model, repo) as (app, pilot):
        await send_and_await_approval(app, pilot, "fix it")
        yield app, pilot


async def send_and_await_approval(app: CairnApp, pilot: Pilot[Any], text: str) -> None:
    """Send `text` and wait for the approval screen the model's tool call brings up."""
    await send(app, pilot, text)
    await until(pilot, lambda: isinstance(app.screen, ApprovalScreen))


async def send(app: CairnApp, pilot: Pilot[Any], text: str) -> None:
    app.query_one("#prompt", Input).value = text
    app.query_one("#prompt", Input).focus()
    await pilot.press("enter")


def chat_text(app: CairnApp) -> str:
    return "\n".join(chat_entries(app))


def approval_text(app: CairnApp) -> str:
    """The approval dialog's preview as drawn, once it is laid out ("" before)."""
    if not isinstance(app.screen, ApprovalScreen):
        return ""
    return rendered_text(app.screen.query_one("#approval-body"))


def last_request_text(fake: FakeModelServer) -> str:
    return json.dumps(fake.requests[-1].body)


def tool_results(fake: FakeModelServer) -> str:
    """The tool results the model was given in the last request, one per line."""
    messages = fake.requests[-1].body["messages"]
    return "\n".join(str(m["content"]) for m in messages if m["role"] == "tool")


async def test_request_becomes_an_approved_edit_on_disk(
    tmp_path: Path, repo: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script(*GREP_READ_EDIT))
    async with served_app(tmp_path, fake_model, repo) as (app, pilot):
        await send(app, pilot, "make total() add up")
        await until(pilot, lambda: "+    return sum(items)" in approval_text(app))
        assert "-    return 1" in approval_text(app)
        assert (repo / "app.py").read_text() == APP_BEFORE  # nothing before the yes
        await pilot.press("y")
        await until(pilot, lambda: "total() now adds up." in chat_text(app))
    assert (repo / "app.py").read_text() == APP_AFTER
    sent = fake_model.requests
    grep_result = sent[1].body["messages"][-1]["content"]
    assert "README.md" in grep_result and "TODO" in grep_result
    assert "1\tdef total(items):" in sent[2].body["messages"][-1]["content"]


async def test_denial_with_a_reason_reaches_the_model(
    tmp_path: Path, repo: Path, fake_model: FakeModelServer
) -> None:
    async with edit_awaiting_approval(tmp_path, fake_model, repo, "Understood.") as (app, pilot):
        await pilot.press("n")
        for key in "use a loop instead":
            await pilot.press("space" if key == " " else key)
        await pilot.press("enter")
        await until(pilot, lambda: "Understood." in chat_text(app))
    assert (repo / "app.py").read_text() == APP_BEFORE
    assert "use a loop instead" in last_request_text(fake_model)


async def test_escape_interrupts_a_waiting_run(
    tmp_path: Path, repo: Path, fake_model: FakeModelServer
) -> None:
    stopped = "Stopped as asked."
    async with edit_awaiting_approval(tmp_path, fake_model, repo, stopped) as (app, pilot):
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ApprovalScreen))
        await until(pilot, lambda: "interrupt" in chat_text(app).lower())
        await send(app, pilot, "ok, what now?")
        await until(pilot, lambda: "Stopped as asked." in chat_text(app))
    assert (repo / "app.py").read_text() == APP_BEFORE
    assert "interrupted by the user" in last_request_text(fake_model)


async def test_escape_interrupts_a_streaming_answer(
    tmp_path: Path, repo: Path, fake_model: FakeModelServer
) -> None:
    long_text = "word " * 400
    fake_model.set_script(script({"text": long_text, "chunk_size": 5, "chunk_delay_s": 0.01}))
    async with served_app(tmp_path, fake_model, repo) as (app, pilot):
        await send(app, pilot, "talk a lot")
        await until(pilot, lambda: "word word" in chat_text(app))
        await pilot.press("escape")
        await until(pilot, lambda: "interrupt" in chat_text(app).lower())
        assert chat_text(app).count("word") < 400


async def test_restarting_cairn_shows_the_earlier_conversation(
    tmp_path: Path, repo: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"text": "First answer."}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        async with running_app(server.url, repo) as (app, pilot):
            await send(app, pilot, "first question")
            await until(pilot, lambda: "First answer." in chat_text(app))
        async with running_app(server.url, repo) as (app, pilot):
            await until(pilot, lambda: "First answer." in chat_text(app))
            assert "first question" in chat_text(app)


def _running(command_line: str) -> bool:
    """Whether a process with this command line runs (in any PID namespace: the sandbox has
    its own, so a pid the command wrote for itself means nothing out here)."""
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if argv == command_line:
            return True
    return False


async def test_escape_kills_an_approved_command_and_says_it_ran(
    tmp_path: Path, repo: Path, fake_model: FakeModelServer
) -> None:
    command = "echo started; touch shell.started; sleep 20.7 && echo done > done.txt"
    fake_model.set_script(
        script(
            {"text": "Waiting for it.", "tool_calls": [call("shell", command=command)]},
            {"text": "It was cut short."},
        )
    )
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        async with running_app(server.url, repo) as (app, pilot):
            await send_and_await_approval(app, pilot, "run the slow thing")
            await pilot.press("y")
            await until(pilot, lambda: (repo / "shell.started").exists())
            await pilot.press("escape")
            await until(pilot, lambda: "Interrupted" in chat_text(app))
            await until(pilot, lambda: "killed after" in chat_text(app))
            assert not _running("sleep 20.7")
            assert "allowed once" not in chat_text(app)  # it did not quietly finish as allowed
            await send(app, pilot, "what happened?")
            await until(pilot, lambda: "It was cut short." in chat_text(app))
            assert app.conversation_id is not None
            async with CairnApi(server.url, TEST_TOKEN) as api:
                first_run = (await api.list_runs(app.conversation_id))[0].id
        told = tool_results(fake_model)
        audit = await asyncio.to_thread(
            cairn,
            repo,
            tmp_path / "data",
            "runs",
            "show",
            "--json",
            first_run,
            env={"CAIRN_SERVER_URL": server.url, "CAIRN_TOKEN": TEST_TOKEN},
        )
    assert not (repo / "done.txt").exists()
    assert "killed after" in told and "started" in told
    assert "not run" not in told and "denied" not in told
    assert audit.returncode == 0, audit.stderr
    approvals = json.loads(audit.stdout)["approvals"]
    assert [(a["decision"], a["decided_by"], a["answer"]) for a in approvals] == [
        ("allow", "user", "once")
    ]
    assert "killed after" in approvals[0]["outcome_reason"]
    assert "started" in approvals[0]["outcome_content"]


async def test_a_request_started_headless_in_another_clone_is_only_shown_in_the_tui(
    tmp_path: Path, repo: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"text": "Noting where.", "tool_calls": [call("shell", command="pwd >> where.txt")]},
            {"text": "Noted."},
        )
    )
    clone = tmp_path / "clone"
    run_git(tmp_path, "clone", "-q", str(repo), str(clone))
    remote = {"CAIRN_SERVER_URL": "", "CAIRN_TOKEN": TEST_TOKEN, **model_env(fake_model)}
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        remote["CAIRN_SERVER_URL"] = server.url
        async with running_app(server.url, repo) as (app, pilot):  # idle in the first clone
            headless = asyncio.create_task(
                asyncio.to_thread(
                    cairn,
                    clone,
                    tmp_path / "data",
                    "-p",
                    "note where you are",
                    "-c",
                    "--approve",
                    "all",
                    env=remote,
                )
            )
            while not headless.done():
                assert not isinstance(app.screen, ApprovalScreen)
                await pilot.pause(0.05)
            done = headless.result()
            await until(pilot, lambda: "Noted." in chat_text(app))
            assert '✓ shell "pwd >> where.txt" — in another client' in chat_text(app)
            assert not isinstance(app.screen, ApprovalScreen)
    assert done.returncode == 0, done.stderr
    assert (clone / "where.txt").read_text().count("\n") == 1
    assert not (repo / "where.txt").exists()
