"""API tokens: created with an optional expiry, listed, revoked, and refused once expired or
revoked, at the websocket handshake and by REST, with a reason the user can act on.

The commands run as `cairn-server ...` (typer's runner) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx
import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import ErrorEvent, Welcome
from cairn_server import __version__ as cairn_server_version
from cairn_server.cli import app
from cairn_server.storage.db import open_database
from cairn_server.storage.store import Store, TokenRefused
from support.servers import TEST_TOKEN, cairn_server
from support.wire import WireClient
from typer.testing import CliRunner, Result
from websockets.exceptions import ConnectionClosed


async def cli(database_url: str, *args: str) -> Result:
    """`cairn-server ARGS --database-url URL`, off the event loop (the command runs its own)."""
    command = [*args, "--database-url", database_url]
    return await asyncio.to_thread(CliRunner().invoke, app, command, env={"COLUMNS": "200"})


async def refusal_at_handshake(server_url: str, token: str) -> tuple[str, int, str]:
    """The error message, close code and close reason a hello with `token` gets."""
    client = await WireClient.connect(server_url)
    error = await client.hello(token=token)
    assert isinstance(error, ErrorEvent) and error.code == "unauthorized", error
    with pytest.raises(ConnectionClosed) as closed:
        await client.recv()
    assert closed.value.rcvd is not None
    return error.message, closed.value.rcvd.code, closed.value.rcvd.reason


async def test_create_list_and_revoke_from_the_command_line(
    database_url: str, fake_model: FakeModelServer
) -> None:
    created = await cli(database_url, "create-token", "alice", "--label", "laptop")
    assert created.exit_code == 0, created.output
    laptop = created.output.strip()
    expiring = await cli(database_url, "create-token", "bob", "--expires-in", "30d")
    assert expiring.exit_code == 0, expiring.output
    ci = (await cli(database_url, "create-token", "alice", "--label", "ci")).output.strip()

    listed = await cli(database_url, "tokens", "list")
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.output.splitlines()
    assert header.split() == ["ID", "USER", "LABEL", "STATUS", "CREATED", "LAST", "USED"]
    assert [row.split()[1:4] for row in rows] == [
        ["alice", "laptop", "active"],
        ["bob", "-", "expires"],
        ["alice", "ci", "active"],
    ]
    assert laptop not in listed.output and ci not in listed.output  # secrets are never shown
    assert (
        len((await cli(database_url, "tokens", "list", "--user", "alice")).output.splitlines()) == 3
    )

    laptop_id = rows[0].split()[0]
    revoked = await cli(database_url, "tokens", "revoke", laptop_id)
    assert revoked.exit_code == 0, revoked.output
    assert re.match(rf"revoked {laptop_id} \(laptop\) on \d{{4}}-\d\d-\d\d", revoked.output)
    by_value = await cli(database_url, "tokens", "revoke", ci)  # the secret works too
    assert by_value.exit_code == 0 and "(ci)" in by_value.output
    statuses = [
        row.split()[3]
        for row in (await cli(database_url, "tokens", "list")).output.splitlines()[1:]
    ]
    assert statuses == ["revoked", "expires", "revoked"]

    with cairn_server(database_url, fake_model) as server:
        message, code, reason = await refusal_at_handshake(server.url, laptop)
        assert code == 4401
        assert message.startswith("this token was revoked on ") and "revoked" in reason
        async with httpx.AsyncClient(base_url=server.url) as api:
            answer = await api.get("/v1/agents", headers={"Authorization": f"Bearer {ci}"})
        assert answer.status_code == 401
        assert answer.json()["detail"].startswith("this token was revoked on ")


async def test_bad_commands_say_what_is_wrong(database_url: str) -> None:
    for duration in ("30", "0d", "1y", "-3d", "99999999d"):
        result = await cli(database_url, "create-token", "alice", "--expires-in", duration)
        assert result.exit_code == 2, (duration, result.output)
        assert "--expires-in" in result.output and duration in result.output
    missing = await cli(database_url, "tokens", "revoke", "tok_nope")
    assert missing.exit_code == 2 and "no token has that id or value" in missing.output


async def test_an_expired_token_is_refused_everywhere(
    database_url: str, fake_model: FakeModelServer
) -> None:
    database = await open_database(database_url)
    try:
        store = Store(database)
        lasting = await store.create_token("carol", expires_in=timedelta(days=1))
        brief = await store.create_token("carol", expires_in=timedelta(milliseconds=1))
        await asyncio.sleep(0.01)
        assert (await store.authenticate(lasting)).name == "carol"
        with pytest.raises(TokenRefused, match=r"this token expired on \d{4}-\d\d-\d\d"):
            await store.authenticate(brief)
    finally:
        await database.close()

    with cairn_server(database_url, fake_model) as server:
        message, code, _ = await refusal_at_handshake(server.url, brief)
        assert code == 4401 and message.startswith("this token expired on ")
        client = await WireClient.connect(server.url)
        assert isinstance(await client.hello(token=lasting), Welcome)
        await client.close()
        async with httpx.AsyncClient(base_url=server.url) as api:
            answer = await api.get("/v1/agents", headers={"Authorization": f"Bearer {brief}"})
            assert answer.status_code == 401 and "expired" in answer.json()["detail"]
            fine = await api.get("/v1/agents", headers={"Authorization": f"Bearer {lasting}"})
            assert fine.status_code == 200


async def test_health_tells_the_version_only_to_a_valid_token(
    database_url: str, fake_model: FakeModelServer
) -> None:
    with cairn_server(database_url, fake_model) as server:
        async with httpx.AsyncClient(base_url=server.url) as api:
            stranger = await api.get("/v1/health")
            wrong = await api.get("/v1/health", headers={"Authorization": "Bearer nope"})
            owner = await api.get("/v1/health", headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    assert stranger.status_code == wrong.status_code == owner.status_code == 200
    assert stranger.json() == wrong.json() == {"status": "ok"}
    assert owner.json() == {"status": "ok", "version": cairn_server_version}
