"""The real app and session against the real server, which stops mid-session: the chat says the
connection was lost and that it reconnects, then, when it gives up, that it was lost for good
(naming the server) and how to go on; `cairn` would end with 1 (README, Exit codes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cairn_client import session as session_module
from cairn_client.errors import ExitCode
from cairn_client.tui.app import CairnApp
from cairn_fakes.runner import FakeModelServer
from support.servers import cairn_server, sqlite_url
from support.sessions import sessions_for
from support.tui import chat_entries, status_text
from support.waiting import until


async def test_a_server_gone_mid_session_is_a_lost_connection_then_a_clear_end(
    tmp_path: Path, fake_model: FakeModelServer, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "MAX_RECONNECT_ATTEMPTS", 2)  # give up in moments
    monkeypatch.setattr(session_module, "RECONNECT_DELAYS_S", (0.05,))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        app = CairnApp(sessions_for(server.url, repo), workspace_name="repo")
        async with app.run_test(size=(110, 36)) as pilot:
            await until(pilot, lambda: "connected" in status_text(app))
            await asyncio.to_thread(server.stop)
            await until(pilot, lambda: app.failure is not None, message="it never gave up")
            await until(pilot, lambda: len(chat_entries(app)) >= 2)

            lost, gave_up = chat_entries(app)[-2:]
            assert lost.startswith("Server connection lost: ") and lost.endswith("reconnecting…")
            assert gave_up == (
                f"Lost the connection to the server at {server.url} and gave up reconnecting "
                "after 2 tries (connection refused). Quit and start cairn again to continue "
                "this conversation."
            )
            assert app.is_running  # the transcript stays readable until the user quits
            assert app.failure is not None and app.failure.exit_code == ExitCode.FAILED
