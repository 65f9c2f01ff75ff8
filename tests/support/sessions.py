"""Real client sessions for tests: a ClientSession in a repository against a test server,
run as a task until the test is done with it.

Shared by the client and end-to-end tests that drive a session with or without the TUI.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from cairn_client.call_log import CallLog
from cairn_client.listener import SessionListener
from cairn_client.policy.policy import Policy
from cairn_client.policy.settings import PolicySettings
from cairn_client.session import ClientSession, Endpoint
from cairn_client.workspace import detect_workspace
from cairn_protocol.messages import RunFinished

from support.listener import RecordingListener
from support.servers import TEST_TOKEN
from support.settings import call_log as log_in_data_dir
from support.settings import environment, policy_for


def endpoint_at(server_url: str) -> Endpoint:
    """The server at `server_url`, reached with the test token."""

    async def resolve() -> str:
        return server_url

    return Endpoint(TEST_TOKEN, resolve)


def client_session(
    server_url: str,
    repo: Path,
    listener: SessionListener,
    policy: Policy | None = None,
    *,
    conversation: str = "latest",
    call_log: CallLog | None = None,
    interactive: bool = False,
) -> ClientSession:
    """A session in `repo` against the server at `server_url` (the default policy, and the
    call log `cairn` keeps in the test's data folder, unless given)."""
    return ClientSession(
        endpoint_at(server_url),
        detect_workspace(repo, environ=environment()),
        policy or policy_for(PolicySettings()),
        listener,
        conversation,
        call_log=call_log or log_in_data_dir(repo),
        interactive=interactive,
    )


def sessions_for(
    server_url: str,
    repo: Path,
    policy: Policy | None = None,
    *,
    conversation: str = "latest",
    call_log: CallLog | None = None,
    interactive: bool = False,
) -> Callable[[SessionListener], ClientSession]:
    """What a CairnApp starts its session with: a `client_session` for the app as listener."""
    return lambda listener: client_session(
        server_url,
        repo,
        listener,
        policy,
        conversation=conversation,
        call_log=call_log,
        interactive=interactive,
    )


@asynccontextmanager
async def welcomed(
    session: ClientSession, listener: RecordingListener
) -> AsyncIterator[ClientSession]:
    """The session running as a task, once the server has welcomed it; closed afterwards."""
    runner = asyncio.create_task(session.run())
    try:
        await listener.wait_for(lambda: bool(listener.of_type("welcome")))
        yield session
    finally:
        await session.close()
        await asyncio.wait_for(runner, 10)


async def one_request(
    session: ClientSession, listener: RecordingListener, text: str
) -> RunFinished:
    """Run the session for one request `text`; the end of the run it started."""
    async with welcomed(session, listener):
        await session.send_user_message(text)
        await listener.wait_for(lambda: bool(listener.of_type("run_finished")), timeout=30)
    finished = listener.of_type("run_finished")[0]
    assert isinstance(finished, RunFinished)
    return finished
