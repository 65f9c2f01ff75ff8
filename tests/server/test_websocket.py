"""The server through its websocket: handshake, runs, tools, cancel, resume, restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cairn_protocol import (
    AssistantMessage,
    Cancel,
    ErrorEvent,
    Ping,
    RunFinished,
    ToolRequest,
    ToolResult,
    ToolSettled,
    UserMessage,
    Welcome,
)
from cairn_protocol.messages import TRANSIENT_EVENT_TYPES
from cairn_server.fakes.runner import FakeModelServer
from support.servers import cairn_server, call, script, sqlite_url
from support.wire import WireClient
from websockets.exceptions import ConnectionClosed


def _messages_sent(fake: FakeModelServer, index: int = -1) -> list[dict[str, Any]]:
    body = fake.requests[index].body
    return list(body["messages"])


def _all_text(fake: FakeModelServer, index: int = -1) -> str:
    return json.dumps(fake.requests[index].body)


async def _connected(server_url: str, **hello: Any) -> tuple[WireClient, Welcome]:
    client = await WireClient.connect(server_url)
    welcome = await client.hello(**hello)
    assert isinstance(welcome, Welcome), welcome
    return client, welcome


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
        client, welcome = await _connected(server.url)
        assert welcome.model == "openai/gpt-4o-mini"
        await client.send(UserMessage(text="What does app.py do?"))
        request = await client.recv_until("tool_request")
        assert isinstance(request, ToolRequest)
        assert (request.tool, request.arguments) == ("read", {"path": "app.py"})
        await client.send(
            ToolResult(call_id=request.call_id, status="ok", content="print('hello')")
        )
        finished = await client.recv_until("run_finished")
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


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_streamed_answer_and_history_with_each_provider(
    tmp_path: Path, fake_model: FakeModelServer, provider: str
) -> None:
    fake_model.set_script(script({"text": "Hello from the model, streamed in pieces."}))
    with cairn_server(sqlite_url(tmp_path), fake_model, provider) as server:
        client, _ = await _connected(server.url)
        await client.send(UserMessage(text="hi"))
        final = await client.recv_until("assistant_message")
        deltas = [f.text for f in client.seen if f.type == "assistant_delta"]  # type: ignore[union-attr]
        assert len(deltas) > 1
        assert "".join(deltas) == final.text == "Hello from the model, streamed in pieces."  # type: ignore[union-attr]
        await client.recv_until("run_finished")
        await client.close()
        path = fake_model.requests[-1].path
        assert path.endswith("/chat/completions" if provider == "openai" else "/messages")

        again, welcome = await _connected(server.url)
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
        client, _ = await _connected(server.url)
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
        assert pong.type == "pong" and pong.nonce == "still-here"  # type: ignore[union-attr]


async def test_denial_reason_reaches_the_model(tmp_path: Path, fake_model: FakeModelServer) -> None:
    fake_model.set_script(
        script(
            {"tool_calls": [call("shell", command="rm -rf build")]},
            {"text": "Understood, I will not delete it."},
        )
    )
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, _ = await _connected(server.url)
        await client.send(UserMessage(text="clean up"))
        request = await client.recv_until("tool_request")
        await client.send(
            ToolResult(call_id=request.call_id, status="denied", reason="keep the build folder")  # type: ignore[union-attr]
        )
        await client.recv_until("run_finished")
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
        client, _ = await _connected(server.url)
        await client.send(UserMessage(text="go"))
        finished = await client.recv_until("run_finished")
        assert finished.stop_reason == "end_turn"  # type: ignore[union-attr]
        assert not [f for f in client.seen if f.type == "tool_request"]
        results = [m["content"] for m in _messages_sent(fake_model) if m["role"] == "tool"]
        assert "not valid JSON" in results[0]
        assert "unknown tool 'teleport'" in results[1]
        assert "invalid arguments for read" in results[2] and "path" in results[2]


async def test_cancel_settles_a_pending_request_and_the_model_sees_why(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {"tool_calls": [call("edit", path="a.py", old_string="a", new_string="b")]},
            {"text": "ok"},
        )
    )
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, _ = await _connected(server.url)
        await client.send(UserMessage(text="change a"))
        request = await client.recv_until("tool_request")
        await client.send(Cancel(reason="I changed my mind"))
        settled = await client.recv_until("tool_settled")
        assert isinstance(settled, ToolSettled)
        assert settled.call_id == request.call_id and settled.status == "denied"  # type: ignore[union-attr]
        finished = await client.recv_until("run_finished")
        assert finished.stop_reason == "cancelled"  # type: ignore[union-attr]
        # A late answer is refused, and the next run tells the model what happened.
        await client.send(ToolResult(call_id=request.call_id, status="ok", content="done"))  # type: ignore[union-attr]
        late = await client.recv()
        assert isinstance(late, ErrorEvent) and late.code == "unknown_call"
        await client.send(UserMessage(text="never mind"))
        await client.recv_until("run_finished")
        assert "I changed my mind" in _all_text(fake_model)


async def test_new_message_supersedes_a_waiting_run(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script({"tool_calls": [call("shell", command="make")]}, {"text": "second answer"})
    )
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, _ = await _connected(server.url)
        await client.send(UserMessage(text="build it"))
        await client.recv_until("tool_request")
        await client.send(UserMessage(text="actually, just say hi"))
        first = await client.recv_until("run_finished")
        assert first.stop_reason == "superseded"  # type: ignore[union-attr]
        second = await client.recv_until("run_finished")
        assert second.stop_reason == "end_turn"  # type: ignore[union-attr]
        sent = _messages_sent(fake_model)
        assert sent[-1] == {"role": "user", "content": "actually, just say hi"}
        assert "superseded" in sent[-2]["content"]


async def test_approval_timeout_denies_instead_of_hanging(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"tool_calls": [call("shell", command="ls")]}, {"text": "ok"}))
    with cairn_server(sqlite_url(tmp_path), fake_model, approval_timeout_s=0.3) as server:
        client, _ = await _connected(server.url)
        await client.send(UserMessage(text="list"))
        await client.recv_until("tool_request")
        settled = await client.recv_until("tool_settled")
        assert "timed out" in (settled.reason or "")  # type: ignore[union-attr]
        assert (await client.recv_until("run_finished")).stop_reason == "end_turn"  # type: ignore[union-attr]
        assert "timed out" in _messages_sent(fake_model)[-1]["content"]


async def test_step_limit_ends_a_looping_run(tmp_path: Path, fake_model: FakeModelServer) -> None:
    fake_model.set_script(
        script(*[{"tool_calls": [call("conversation_search", query="x")]} for _ in range(5)])
    )
    with cairn_server(sqlite_url(tmp_path), fake_model, step_limit=3) as server:
        client, _ = await _connected(server.url)
        await client.send(UserMessage(text="loop"))
        finished = await client.recv_until("run_finished")
        assert finished.stop_reason == "step_limit" and finished.steps == 3  # type: ignore[union-attr]
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
        client, _ = await _connected(server.url)
        await client.send(UserMessage(text="my favourite colour is purple"))
        await client.recv_until("run_finished")
        await client.send(UserMessage(text="what colour did I say?"))
        await client.recv_until("run_finished")
        assert "my favourite colour is purple" in _messages_sent(fake_model)[-1]["content"]


async def test_reconnect_with_resume_after_replays_missed_events_once(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"tool_calls": [call("read", path="a.py")]}, {"text": "done"}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, welcome = await _connected(server.url)
        await client.send(UserMessage(text="read a"))
        started = await client.recv_until("run_started")
        await client.close()  # drops before the tool request arrives

        again, _ = await _connected(
            server.url, conversation=welcome.conversation_id, resume_after=started.seq
        )
        request = await again.recv_until("tool_request")
        replayed = [f.type for f in again.seen if f.type != "welcome"]
        assert "run_started" not in replayed
        await again.send(ToolResult(call_id=request.call_id, status="ok", content="A"))  # type: ignore[union-attr]
        assert (await again.recv_until("run_finished")).stop_reason == "end_turn"  # type: ignore[union-attr]


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
        client, welcome = await _connected(server.url)
        await client.send(UserMessage(text="before the crash"))
        await client.recv_until("tool_request")
    with cairn_server(url, fake_model) as server:
        client, welcome = await _connected(server.url, resume_after=0)
        assert [h.text for h in welcome.history][:2] == ["before the crash", "Let me check."]
        finished = await client.recv_until("run_finished")
        assert finished.stop_reason in ("server_restart",)  # type: ignore[union-attr]
        await client.send(UserMessage(text="and now?"))
        assert (await client.recv_until("run_finished")).stop_reason == "end_turn"  # type: ignore[union-attr]
        tool_message = _messages_sent(fake_model)[-2]
        assert tool_message["role"] == "tool" and "shutting down" in tool_message["content"]
        texts = [f.text for f in client.seen if isinstance(f, AssistantMessage)]
        assert texts[-1] == "after"


async def test_a_new_client_is_handed_requests_still_waiting(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(script({"tool_calls": [call("shell", command="make")]}, {"text": "ok"}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        client, _ = await _connected(server.url)
        await client.send(UserMessage(text="build"))
        request = await client.recv_until("tool_request")
        await client.close()  # e.g. the user quit cairn while the approval screen was open

        again, welcome = await _connected(server.url)
        assert [r.call_id for r in welcome.pending_tool_requests] == [request.call_id]  # type: ignore[union-attr]
        assert welcome.running_run_id == request.run_id  # type: ignore[union-attr]
        await again.send(ToolResult(call_id=request.call_id, status="ok", content="built"))  # type: ignore[union-attr]
        assert (await again.recv_until("run_finished")).stop_reason == "end_turn"  # type: ignore[union-attr]
