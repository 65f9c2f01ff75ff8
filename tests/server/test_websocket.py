"""The server through its websocket: handshake, runs, tools, who executes them, cancel,
withdrawn and late results, resume, restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import (
    AssistantMessage,
    Cancel,
    ErrorEvent,
    Ping,
    RunFinished,
    RunStarted,
    ToolRequest,
    ToolResult,
    ToolSettled,
    ToolWithdrawn,
    UserMessage,
)
from cairn_protocol.messages import TRANSIENT_EVENT_TYPES, ApprovalRecord
from support.servers import TEST_TOKEN, cairn_server, call, script, sqlite_url
from support.wire import WORKSPACE, WireClient, connected
from websockets.exceptions import ConnectionClosed

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
OTHER_CLONE = WORKSPACE.model_copy(update={"path": "/tmp/app-clone"})
ALLOWED_ONCE = ApprovalRecord(
    decision="allow",
    decided_by="user",
    answer="once",
    reason="allowed once by the user",
    shown_title="Run shell command",
    shown="make",
    content_hash="sha256:" + "0" * 64,
    decided_at="2030-01-01T00:00:00Z",
)


def _messages_sent(fake: FakeModelServer, index: int = -1) -> list[dict[str, Any]]:
    body = fake.requests[index].body
    return list(body["messages"])


def _all_text(fake: FakeModelServer, index: int = -1) -> str:
    return json.dumps(fake.requests[index].body)


def _tool_results(fake: FakeModelServer, index: int = -1) -> str:
    """Every tool result the model was given in one request, one per line."""
    return "\n".join(m["content"] for m in _messages_sent(fake, index) if m["role"] == "tool")


async def test_full_run_with_client_tool_on_each_database(
    database_url: str, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"text": "Looking.", "tool_calls": [call("read", path="app.py")]},
            {"text": "It prints hello."},
        )
    )
    with cairn_server(database_url, fake_model) as server:
        client, welcome = await connected(server.url)
        assert welcome.model == "openai/gpt-4o-mini"
        await client.send(UserMessage(text="What does app.py do?"))
        request = await client.recv_until(ToolRequest)
        assert isinstance(request, ToolRequest)
        assert (request.tool, request.arguments) == ("read", {"path": "app.py"})
        await client.send(
            ToolResult(call_id=request.call_id, status="ok", content="print('hello')")
        )
        finished = await client.recv_until(RunFinished)
        assert isinstance(finished, RunFinished)
        assert finished.stop_reason == "end_turn"
        assert finished.steps == 2 and finished.usage.input_tokens > 0
        seqs = [f.seq for f in client.seen if f.type not in TRANSIENT_EVENT_TYPES]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        tool_message = _messages_sent(fake_model)[-1]
        assert tool_message == {
            "role": "tool",
            "tool_call_id": tool_message["tool_call_id"],
            "content": "print('hello')",
        }
        await client.close()


async def test_an_idle_conversation_is_forgotten_after_its_run_and_its_client(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    """The runtime's per-conversation hubs and locks do not only grow."""
    fake_model.set_script(script({"text": "Done."}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        runtime = server.app.state.runtime
        client, _ = await connected(server.url)
        await client.send(UserMessage(text="hi"))
        await client.recv_until(RunFinished)
        assert runtime.conversations_held == 1  # the client is still here
        await client.close()
        for _ in range(500):  # until the server has seen the connection go
            if not runtime.conversations_held:
                break
            await asyncio.sleep(0.02)
        assert runtime.conversations_held == 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_streamed_answer_and_history_with_each_provider(
    tmp_path: Path, fake_model: FakeModelServer, provider: str
) -> None:
    fake_model.set_script(script({"text": "Hello from the model, streamed in pieces."}))
    with cairn_server(sqlite_url(tmp_path), fake_model, provider) as server:
        client, _ = await connected(server.url)
        await client.send(UserMessage(text="hi"))
        final = await client.recv_until(AssistantMessage)
        deltas = [f.text for f in client.seen if f.type == "assistant_delta"]
        assert len(deltas) > 1
        assert "".join(deltas) == final.text == "Hello from the model, streamed in pieces."
        await client.recv_until(RunFinished)
        await client.close()
        path = fake_model.requests[-1].path
        assert path.endswith("/chat/completions" if provider == "openai" else "/messages")

        again, welcome = await connected(server.url)
        assert [(h.role, h.text) for h in welcome.history] == [
            ("user", "hi"),
            ("assistant", "Hello from the model, streamed in pieces."),
        ]
        await again.close()


async def test_missing_or_wrong_token_is_refused(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        for token in ("", "cairn_wrong"):
            client = await WireClient.connect(server.url)
            error = await client.hello(token=token)
            assert isinstance(error, ErrorEvent) and error.code == "unauthorized"
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4401
            assert "token" in closed.value.rcvd.reason


async def test_wrong_protocol_version_is_refused_with_reason(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client = await WireClient.connect(server.url)
        error = await client.hello(protocol_version=99)
        assert isinstance(error, ErrorEvent) and error.code == "bad_version"
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
        assert "version" in closed.value.rcvd.reason


async def test_bad_frames_get_error_frames_and_the_connection_survives(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, _ = await connected(server.url)
        for raw, code in [
            ("this is not json", "malformed_frame"),
            ('{"type": "teleport"}', "unknown_frame"),
            ('{"type": "user_message"}', "malformed_frame"),
            ('{"type": "tool_result", "call_id": "nope", "status": "ok"}', "unknown_call"),
        ]:
            await client.send(raw)
            error = await client.recv()
            assert isinstance(error, ErrorEvent), raw
            assert error.code == code, (raw, error)
        await client.send(Ping(nonce="still-here"))
        pong = await client.recv()
        assert pong.type == "pong" and pong.nonce == "still-here"


async def test_denial_reason_reaches_the_model(tmp_path: Path, fake_model: FakeModelServer) -> None:
    fake_model.set_script(
        script(
            {"tool_calls": [call("shell", command="rm -rf build")]},
            {"text": "Understood, I will not delete it."},
        )
    )
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, _ = await connected(server.url)
        await client.send(UserMessage(text="clean up"))
        request = await client.recv_until(ToolRequest)
        await client.send(
            ToolResult(call_id=request.call_id, status="denied", reason="keep the build folder")
        )
        await client.recv_until(RunFinished)
        last = _messages_sent(fake_model)[-1]
        assert last["role"] == "tool" and "keep the build folder" in last["content"]


async def test_model_errors_in_tool_calls_go_back_to_the_model(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"tool_calls": [{"name": "read", "raw_arguments": '{"path": "a.py"'}]},
            {"tool_calls": [call("teleport", where="mars")]},
            {"tool_calls": [call("read", path=5)]},
            {"text": "I give up."},
        )
    )
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, _ = await connected(server.url)
        await client.send(UserMessage(text="go"))
        finished = await client.recv_until(RunFinished)
        assert finished.stop_reason == "end_turn"
        assert not [f for f in client.seen if f.type == "tool_request"]
        results = [m["content"] for m in _messages_sent(fake_model) if m["role"] == "tool"]
        assert "not valid JSON" in results[0]
        assert "unknown tool 'teleport'" in results[1]
        assert "invalid arguments for read" in results[2] and "path" in results[2]
        # Each refusal is announced as it is made, under the model's id of the call.
        made = [c for f in client.seen if isinstance(f, AssistantMessage) for c in f.tool_calls]
        settled = [f for f in client.seen if isinstance(f, ToolSettled)]
        assert [s.call_id for s in settled] == [c.call_id for c in made]
        assert [(s.status, s.result) for s in settled] == [("error", None)] * 3
        # The reason shown is what the model read (its start, when long).
        assert all(
            s.reason and result.startswith(f"Error: {s.reason}")
            for s, result in zip(settled, results, strict=True)
        )


async def test_cancel_withdraws_a_pending_request_and_the_model_sees_why(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"tool_calls": [call("edit", path="a.py", old_string="a", new_string="b")]},
            {"text": "ok"},
        )
    )
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, _ = await connected(server.url)
        await client.send(UserMessage(text="change a"))
        request = await client.recv_until(ToolRequest)
        assert isinstance(request, ToolRequest)
        await client.send(Cancel(reason="I changed my mind"))
        withdrawn = await client.recv_until(ToolWithdrawn)
        assert isinstance(withdrawn, ToolWithdrawn)
        assert (withdrawn.call_id, withdrawn.reason) == (request.call_id, "I changed my mind")
        # The executor had not started it: it says so, and that is what is recorded.
        not_run = "not run: the request was withdrawn before it ran (I changed my mind)"
        await client.send(ToolResult(call_id=request.call_id, status="denied", reason=not_run))
        settled = await client.recv_until(ToolSettled)
        assert isinstance(settled, ToolSettled)
        assert (settled.status, settled.reason) == ("denied", not_run)
        finished = await client.recv_until(RunFinished)
        assert finished.stop_reason == "cancelled"
        # A second answer is refused, and the next run tells the model what happened.
        await client.send(ToolResult(call_id=request.call_id, status="ok", content="done"))
        late = await client.recv()
        assert isinstance(late, ErrorEvent) and late.code == "unknown_call"
        await client.send(UserMessage(text="never mind"))
        await client.recv_until(RunFinished)
        assert "I changed my mind" in _all_text(fake_model)
        assert '"content": "done"' not in _all_text(fake_model)


async def test_a_withdrawn_command_that_ran_is_recorded_as_it_ended(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script({"tool_calls": [call("shell", command="make")]}, {"text": "It was stopped."})
    )
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, _ = await connected(server.url)
        await client.send(UserMessage(text="build"))
        request = await client.recv_until(ToolRequest)
        await client.send(Cancel())
        await client.recv_until(ToolWithdrawn)
        killed = "approved and started, then killed after 2.0 s, before it finished"
        await client.send(
            ToolResult(
                call_id=request.call_id,
                status="error",
                content="killed after 2.0 s\nstdout:\ncompiling…",
                reason=killed,
                approval=ALLOWED_ONCE,
            )
        )
        settled = await client.recv_until(ToolSettled)
        assert (settled.status, settled.reason) == ("error", killed)
        assert (await client.recv_until(RunFinished)).stop_reason == "cancelled"
        await client.send(UserMessage(text="what happened?"))
        await client.recv_until(RunFinished)
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as api:
            audit = (await api.get(f"/v1/runs/{request.run_id}/approvals")).json()
    told = _tool_results(fake_model)
    assert killed in told and "compiling" in told and "not run" not in told
    assert [(a["decision"], a["outcome"], a["outcome_reason"]) for a in audit] == [
        ("allow", "error", killed)
    ]
    assert "compiling" in audit[0]["outcome_content"]


async def test_a_silent_executor_leaves_an_unknown_outcome_that_a_late_result_fills_in(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"tool_calls": [call("shell", command="make")]},
            {"text": "I will check before building again."},
            {"text": "It had built."},
        )
    )
    with cairn_server(sqlite_url(tmp_path), fake_model, withdraw_grace_s=0.2) as server:
        client, welcome = await connected(server.url, client_id="cli-builder")
        await client.send(UserMessage(text="build"))
        request = await client.recv_until(ToolRequest)
        assert isinstance(request, ToolRequest)
        await client.send(Cancel())
        settled = await client.recv_until(ToolSettled)  # no answer within the grace
        assert settled.status == "error"
        assert "did not report whether it ran" in (settled.reason or "")
        await client.recv_until(RunFinished)
        await client.send(UserMessage(text="did it build?"))
        await client.recv_until(RunFinished)
        told = _tool_results(fake_model)
        assert "Outcome unknown" in told and "before running it again" in told
        assert "not run" not in told
        await client.close()

        # The client that ran it comes back (here: a new process) with the recorded result.
        back, again = await connected(server.url)
        assert again.unknown_outcomes == [request.call_id]
        await back.send(
            ToolResult(
                call_id=request.call_id, status="ok", content="built: app", approval=ALLOWED_ONCE
            )
        )
        late = await back.recv_until(ToolSettled)
        assert (late.call_id, late.status) == (request.call_id, "ok")
        await back.send(UserMessage(text="and now?"))
        await back.recv_until(RunFinished)
        async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as api:
            audit = (await api.get(f"/v1/runs/{request.run_id}/approvals")).json()
        _, later = await connected(server.url)
    assert "built: app" in _messages_sent(fake_model)[-2]["content"]
    assert [(a["decision"], a["outcome"]) for a in audit] == [("allow", "ok")]
    assert later.unknown_outcomes == []


async def test_only_the_executor_answers_a_request(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"tool_calls": [call("shell", command="make")]}, {"text": "ok"}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        asker, asker_welcome = await connected(server.url, client_id="cli-asker")
        watcher, watcher_welcome = await connected(
            server.url, client_id="cli-watcher", workspace=OTHER_CLONE
        )
        assert (asker_welcome.client_id, watcher_welcome.client_id) == ("cli-asker", "cli-watcher")
        await asker.send(UserMessage(text="build"))
        request = await asker.recv_until(ToolRequest)
        seen = await watcher.recv_until(ToolRequest)
        assert request.executor == seen.executor == "cli-asker"
        await watcher.send(ToolResult(call_id=seen.call_id, status="ok", content="built twice"))
        refused = await watcher.recv_until(ErrorEvent)
        assert isinstance(refused, ErrorEvent) and refused.code == "not_executor"
        await asker.send(ToolResult(call_id=request.call_id, status="ok", content="built once"))
        assert (await asker.recv_until(RunFinished)).stop_reason == "end_turn"
    assert "built once" in _all_text(fake_model) and "built twice" not in _all_text(fake_model)


async def test_a_reconnecting_client_keeps_the_right_to_run_its_requests(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"tool_calls": [call("shell", command="make")]}, {"text": "ok"}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        asker, welcome = await connected(server.url, client_id="cli-asker")
        watcher, _ = await connected(server.url, client_id="cli-watcher")  # same checkout
        await asker.send(UserMessage(text="build"))
        request = await asker.recv_until(ToolRequest)
        await asker.close()  # the connection drops; the client lives on

        back, again = await connected(
            server.url,
            client_id="cli-asker",
            conversation=welcome.conversation_id,
            resume_after=request.seq - 1,
        )
        assert again.pending_tool_requests[0].executor == "cli-asker"
        replayed = await back.recv_until(ToolRequest)
        assert replayed.executor == "cli-asker"
        await back.send(ToolResult(call_id=request.call_id, status="ok", content="built"))
        assert (await back.recv_until(RunFinished)).stop_reason == "end_turn"
        await watcher.recv_until(RunFinished)
    requests = [f for f in watcher.seen if isinstance(f, ToolRequest)]
    assert [r.executor for r in requests] == ["cli-asker"]  # never handed to the watcher


async def test_new_message_supersedes_a_waiting_run(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script({"tool_calls": [call("shell", command="make")]}, {"text": "second answer"})
    )
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, _ = await connected(server.url)
        await client.send(UserMessage(text="build it"))
        await client.recv_until(ToolRequest)
        await client.send(UserMessage(text="actually, just say hi"))
        first = await client.recv_until(RunFinished)
        assert first.stop_reason == "superseded"
        second = await client.recv_until(RunFinished)
        assert second.stop_reason == "end_turn"
        sent = _messages_sent(fake_model)
        assert sent[-1] == {"role": "user", "content": "actually, just say hi"}
        assert "superseded" in sent[-2]["content"]


async def test_approval_timeout_denies_instead_of_hanging(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"tool_calls": [call("shell", command="ls")]}, {"text": "ok"}))
    with cairn_server(
        sqlite_url(tmp_path), fake_model, approval_timeout_s=0.3, withdraw_grace_s=0.2
    ) as server:
        client, _ = await connected(server.url)
        await client.send(UserMessage(text="list"))
        await client.recv_until(ToolRequest)
        settled = await client.recv_until(ToolSettled)
        assert "timed out" in (settled.reason or "")
        assert (await client.recv_until(RunFinished)).stop_reason == "end_turn"
        assert "timed out" in _messages_sent(fake_model)[-1]["content"]


async def test_step_limit_ends_a_looping_run(tmp_path: Path, fake_model: FakeModelServer) -> None:
    fake_model.set_script(
        script(*[{"tool_calls": [call("conversation_search", query="x")]} for _ in range(5)])
    )
    with cairn_server(sqlite_url(tmp_path), fake_model, step_limit=3) as server:
        client, _ = await connected(server.url)
        await client.send(UserMessage(text="loop"))
        finished = await client.recv_until(RunFinished)
        assert finished.stop_reason == "step_limit" and finished.steps == 3
        assert len(fake_model.requests) == 3


async def test_server_tool_runs_without_the_client(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"text": "Noted."},
            {"tool_calls": [call("conversation_search", query="purple")]},
            {"text": "You said purple."},
        )
    )
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, _ = await connected(server.url)
        await client.send(UserMessage(text="my favourite colour is purple"))
        await client.recv_until(RunFinished)
        await client.send(UserMessage(text="what colour did I say?"))
        await client.recv_until(RunFinished)
        assert "my favourite colour is purple" in _messages_sent(fake_model)[-1]["content"]


async def test_reconnect_with_resume_after_replays_missed_events_once(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"tool_calls": [call("read", path="a.py")]}, {"text": "done"}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, welcome = await connected(server.url)
        await client.send(UserMessage(text="read a"))
        started = await client.recv_until(RunStarted)
        await client.close()  # drops before the tool request arrives

        again, _ = await connected(
            server.url, conversation=welcome.conversation_id, resume_after=started.seq
        )
        request = await again.recv_until(ToolRequest)
        replayed = [f.type for f in again.seen if f.type != "welcome"]
        assert "run_started" not in replayed
        await again.send(ToolResult(call_id=request.call_id, status="ok", content="A"))
        assert (await again.recv_until(RunFinished)).stop_reason == "end_turn"


async def test_stopping_mid_run_loses_nothing_and_the_conversation_goes_on(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"text": "Let me check.", "tool_calls": [call("read", path="a.py")]}, {"text": "after"}
        )
    )
    url = sqlite_url(tmp_path)
    with cairn_server(url, fake_model) as server:
        client, welcome = await connected(server.url)
        await client.send(UserMessage(text="before the crash"))
        await client.recv_until(ToolRequest)
    with cairn_server(url, fake_model) as server:
        client, welcome = await connected(server.url, resume_after=0)
        assert [h.text for h in welcome.history][:2] == ["before the crash", "Let me check."]
        finished = await client.recv_until(RunFinished)
        assert finished.stop_reason in ("server_restart",)
        await client.send(UserMessage(text="and now?"))
        assert (await client.recv_until(RunFinished)).stop_reason == "end_turn"
        tool_message = _messages_sent(fake_model)[-2]
        assert tool_message["role"] == "tool" and "shutting down" in tool_message["content"]
        texts = [f.text for f in client.seen if isinstance(f, AssistantMessage)]
        assert texts[-1] == "after"


async def test_a_new_client_is_handed_requests_still_waiting(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"tool_calls": [call("shell", command="make")]}, {"text": "ok"}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, _ = await connected(server.url)
        await client.send(UserMessage(text="build"))
        request = await client.recv_until(ToolRequest)
        await client.close()  # e.g. the user quit cairn while the approval screen was open

        elsewhere, other = await connected(server.url, workspace=OTHER_CLONE)
        assert other.pending_tool_requests[0].executor != other.client_id  # not its checkout
        await elsewhere.send(ToolResult(call_id=request.call_id, status="ok", content="wrong"))
        assert (await elsewhere.recv_until(ErrorEvent)).code == "not_executor"

        again, welcome = await connected(server.url)  # cairn restarted in the same checkout
        assert [r.call_id for r in welcome.pending_tool_requests] == [request.call_id]
        assert welcome.pending_tool_requests[0].executor == welcome.client_id
        assert welcome.running_run_id == request.run_id
        handed = await elsewhere.recv_until(ToolRequest)  # the others see the hand-over
        assert handed.executor == welcome.client_id
        await again.send(ToolResult(call_id=request.call_id, status="ok", content="built"))
        assert (await again.recv_until(RunFinished)).stop_reason == "end_turn"
