"""A killed embedded server: the client says so, restarts it, and nothing persisted is lost."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from cairn_client.embedded import EmbeddedServer
from cairn_client.policy.policy import Policy
from cairn_client.policy.settings import PolicySettings
from cairn_client.policy.types import Approval
from cairn_client.session import ClientSession, Endpoint
from cairn_client.workspace import detect_workspace
from cairn_protocol import RunFinished, Welcome
from cairn_server.fakes.runner import FakeModelServer
from support.listener import RecordingListener
from support.repos import APP_BEFORE
from support.servers import call, model_env, script


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
    embedded = EmbeddedServer(tmp_path / "data", model_env(fake_model))
    listener = RecordingListener([Approval("once")])
    listener.hold_approvals.clear()  # the person is still reading the diff when the crash comes
    session = ClientSession(
        Endpoint(embedded.token, embedded.ensure_running),
        detect_workspace(repo),
        Policy(PolicySettings()),
        listener,
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
