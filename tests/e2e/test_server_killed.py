"""A killed embedded server: the client says so, restarts it, and nothing persisted is lost; a
command that ran before the kill reaches the model with its recorded result, never as "not run"."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from cairn_client.embedded import EmbeddedServer
from cairn_client.policy.settings import PolicySettings
from cairn_client.policy.types import Approval
from cairn_client.session import ClientSession, Endpoint
from cairn_client.workspace import detect_workspace
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, ToolSettled, Welcome
from support.listener import RecordingListener
from support.repos import APP_BEFORE
from support.servers import call, model_env, script
from support.settings import call_log, client_settings, environment, policy_for
from support.waiting import until


async def test_kill_9_mid_run_then_the_conversation_goes_on(
    tmp_path: Path, repo: Path, fake_model: FakeModelServer
) -> None:
    fake_model.set_script(
        script(
            {
                "text": "I will edit.",
                "tool_calls": [call("edit", path="app.py", old_string="1", new_string="2")],
            },
            {"text": "Back after the crash."},
        )
    )
    embedded = EmbeddedServer(
        tmp_path / "data", model_env(fake_model), environ=client_settings().process_env
    )
    listener = RecordingListener([Approval("once")])
    listener.hold_approvals.clear()  # the person is still reading the diff when the crash comes
    session = ClientSession(
        Endpoint(embedded.token, embedded.ensure_running),
        detect_workspace(repo, environ=environment()),
        policy_for(PolicySettings()),
        listener,
        call_log=call_log(repo),
    )
    runner = asyncio.create_task(session.run())
    try:
        await listener.wait_for(lambda: bool(listener.of_type("welcome")))
        await session.send_user_message("change app.py")
        await listener.wait_for(lambda: bool(listener.asked))
        first_pid = embedded.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)

        await listener.wait_for(lambda: any(s == "reconnecting" for s, _ in listener.states))
        await listener.wait_for(lambda: bool(listener.of_type("run_finished")), timeout=60)
        finished = listener.of_type("run_finished")[-1]
        assert isinstance(finished, RunFinished) and finished.stop_reason == "server_restart"
        assert embedded.pid not in (None, first_pid)

        listener.hold_approvals.set()  # the late "yes" must not run a request that is gone
        await listener.wait_for(lambda: bool(listener.handled))
        assert listener.handled[-1][2].status == "denied"
        assert (repo / "app.py").read_text() == APP_BEFORE

        await session.send_user_message("are you back?")
        await listener.wait_for(lambda: len(listener.of_type("run_finished")) == 2)
        last_request = fake_model.requests[-1].body["messages"]
        texts = [str(m.get("content")) for m in last_request]
        assert "change app.py" in texts and "I will edit." in texts
        assert any("restarted" in t for t in texts)
    finally:
        await session.close()
        await asyncio.wait_for(runner, 10)
        await embedded.stop()

    welcomes = [e for e in listener.events if isinstance(e, Welcome)]
    assert len({w.conversation_id for w in welcomes}) == 1  # the same conversation throughout


@pytest.mark.parametrize("back", ["the same cairn reconnects", "a new cairn starts"])
async def test_a_command_that_ran_before_the_kill_reaches_the_model_with_its_result(
    tmp_path: Path, repo: Path, fake_model: FakeModelServer, back: str
) -> None:
    fake_model.set_script(
        script(
            {
                "text": "Counting.",
                "tool_calls": [call("shell", command="echo ran >> count.txt; sleep 1")],
            },
            {"text": "It ran once."},
        )
    )
    embedded = EmbeddedServer(
        tmp_path / "data", model_env(fake_model), environ=client_settings().process_env
    )
    first_url = await embedded.ensure_running()

    async def first_server_only() -> str:  # a cairn that dies with its server, in effect
        return first_url

    def start(listener: RecordingListener, reconnects: bool) -> ClientSession:
        resolve = embedded.ensure_running if reconnects else first_server_only
        return ClientSession(
            Endpoint(embedded.token, resolve),
            detect_workspace(repo, environ=environment()),
            policy_for(PolicySettings()),
            listener,
            call_log=call_log(repo),
        )

    listener = RecordingListener([Approval("once")])
    session = start(listener, reconnects=back == "the same cairn reconnects")
    runner = asyncio.create_task(session.run())
    try:
        await listener.wait_for(lambda: bool(listener.of_type("welcome")))
        await session.send_user_message("count once")
        # until the command has run (it then sleeps a second)
        await until(None, lambda: (repo / "count.txt").exists())
        first_pid = embedded.pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)  # the command is still running: its answer is lost
        request = listener.asked[0].request
        if back == "a new cairn starts":
            await listener.wait_for(lambda: bool(listener.handled))  # recorded, never delivered
            await session.close()
            await asyncio.wait_for(runner, 10)
            listener = RecordingListener()
            session = start(listener, reconnects=True)
            runner = asyncio.create_task(session.run())
            await listener.wait_for(lambda: bool(listener.of_type("welcome")), timeout=60)
            welcome = listener.of_type("welcome")[0]
            assert isinstance(welcome, Welcome)
            assert welcome.unknown_outcomes == [request.call_id]
        else:  # the interrupted run's end is replayed to the session that saw it start
            await listener.wait_for(lambda: bool(listener.of_type("run_finished")), timeout=60)
        await listener.wait_for(  # the recorded result, sent after the reconnect
            lambda: any(
                isinstance(e, ToolSettled) and e.call_id == request.call_id and e.status == "ok"
                for e in listener.events
            )
        )
        ended = len(listener.of_type("run_finished"))
        await session.send_user_message("did it run?")
        await listener.wait_for(lambda: len(listener.of_type("run_finished")) == ended + 1)
    finally:
        await session.close()
        await asyncio.wait_for(runner, 10)
        await embedded.stop()

    assert (repo / "count.txt").read_text() == "ran\n"
    messages = fake_model.requests[-1].body["messages"]
    late = [str(m["content"]) for m in messages if "whose outcome was unknown" in str(m["content"])]
    assert len(late) == 1 and "exit code: 0" in late[0]  # its recorded result, after the restart
    assert all("not run" not in str(m["content"]) for m in messages if m["role"] == "tool")
