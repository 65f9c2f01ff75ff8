"""A session outlives a server that failed to open it: it says why, tries again, and connects
as soon as the server can (an `internal` refusal is not final, unlike a bad token)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cairn_client.call_log import CallLog
from cairn_client.policy.settings import PolicySettings
from cairn_client.session import ClientSession, Endpoint
from cairn_client.workspace import detect_workspace
from cairn_fakes.runner import FakeModelServer
from cairn_server.storage.db import make_engine
from sqlalchemy import text
from support.listener import RecordingListener
from support.servers import TEST_TOKEN, cairn_server, sqlite_url
from support.settings import environment, policy_for


async def rename_table(url: str, old: str, new: str) -> None:
    engine = make_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text(f"ALTER TABLE {old} RENAME TO {new}"))
    await engine.dispose()


async def test_a_session_the_server_failed_to_open_is_tried_again(
    repo: Path, tmp_path: Path, fake_model: FakeModelServer
) -> None:
    url = sqlite_url(tmp_path)
    with cairn_server(url, fake_model) as server:
        await rename_table(url, "blocks", "blocks_away")  # the server cannot make an agent now

        async def resolve() -> str:
            return server.url

        listener = RecordingListener()
        session = ClientSession(
            Endpoint(TEST_TOKEN, resolve),
            detect_workspace(repo, environ=environment()),
            policy_for(PolicySettings()),
            listener,
            call_log=CallLog(tmp_path / "calls.sqlite3", repo),
        )
        runner = asyncio.create_task(session.run())
        try:
            await listener.wait_for(
                lambda: any(
                    state == "reconnecting" and "could not open the session" in detail
                    for state, detail in listener.states
                )
            )
            assert "failed" not in [state for state, _ in listener.states]
            await rename_table(url, "blocks_away", "blocks")
            await listener.wait_for(lambda: bool(listener.of_type("welcome")))
        finally:
            await session.close()
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
