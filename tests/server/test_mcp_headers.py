"""An agent's MCP servers' headers are never kept or shown in clear: sealed in the database
(SQLite and PostgreSQL), masked over REST and in agent files, `${NAME}` resolved from the
server's environment, and still sent as configured to a real MCP server over HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import RunFinished, UserMessage, WorkspaceIdentity
from cairn_protocol.rest import McpServerPublic
from cairn_server.storage.db import open_database
from cairn_server.storage.store import Store
from cairn_server.tools.mcp_headers import (
    HeaderKeyError,
    HeaderReferenceError,
    McpHeaders,
    ServerKey,
    default_key_file,
    masked,
)
from cryptography.fernet import Fernet
from support.mcp_http import http_mcp_server
from support.servers import TEST_TOKEN, cairn_server, call, script
from support.store import new_agent
from support.wire import connected

LITERAL = "literal-k3y-value"  # a header value given as it is: stored sealed
TOKEN = "tok-from-the-environment"  # what ${MCP_TEST_TOKEN} names


@pytest.fixture(scope="module")
def mcp_url() -> Iterator[str]:
    with http_mcp_server() as url:
        yield url


def identity(name: str) -> WorkspaceIdentity:
    commit = hashlib.sha1(name.encode()).hexdigest()
    return WorkspaceIdentity(root_commit=commit, display_name=name, path=f"/tmp/{name}")


async def raw_headers(database_url: str) -> list[Any]:
    """The headers column as the database holds it."""
    database = await open_database(database_url)
    try:
        async with database.engine.connect() as connection:
            rows = await connection.execute(sa.text("SELECT headers FROM agent_mcp_servers"))
            return [row[0] for row in rows]
    finally:
        await database.close()


async def test_headers_are_sealed_masked_and_still_sent_as_configured(
    database_url: str, fake_model: FakeModelServer, mcp_url: str, tmp_path: Path
) -> None:
    env = {"MCP_TEST_TOKEN": TOKEN, "CAIRN_SECRET_KEY_FILE": str(tmp_path / "keys" / "k")}
    headers = {"X-Token": "token ${MCP_TEST_TOKEN}", "X-Key": LITERAL}
    fake_model.set_script(
        script(
            {
                "tool_calls": [
                    call("mcp__remote__header", key="x-token"),
                    call("mcp__remote__header", key="x-key"),
                ]
            },
            {"text": "Done."},
        )
    )
    with cairn_server(database_url, fake_model, env=env) as server:
        client, welcome = await connected(server.url, workspace=identity("sealed"))
        base = f"{server.url}/v1/agents/{welcome.agent_id}/mcp-servers"
        auth = {"Authorization": f"Bearer {TEST_TOKEN}"}
        async with httpx.AsyncClient(headers=auth) as http:
            put = await http.put(f"{base}/remote", json={"url": mcp_url, "headers": headers})
            listed = await http.get(base)
            missing = await http.put(
                f"{base}/other", json={"url": mcp_url, "headers": {"X-A": "${NOT_SET_HERE}"}}
            )
            exported = await http.get(f"{server.url}/v1/agents/{welcome.agent_id}/export")
        await client.send(UserMessage(text="which headers came?"))
        await client.recv_until(RunFinished, timeout=30)
        await client.close()

    assert put.status_code == 200, put.text
    for answer in (put.text, listed.text, exported.text):
        assert LITERAL not in answer and TOKEN not in answer
    [shown] = [McpServerPublic.model_validate(s) for s in listed.json()]
    assert shown.headers == {"X-Token": "***${MCP_TEST_TOKEN}", "X-Key": "***"}
    assert shown.problem is None and "mcp__remote__header" in shown.tools
    assert missing.status_code == 422
    assert "header X-A names ${NOT_SET_HERE}, which is not set" in missing.json()["detail"]
    assert json.loads(exported.text)["mcp_servers"] == []

    [stored] = await raw_headers(database_url)
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert set(stored) == {"X-Token", "X-Key"}
    assert all(value.startswith("sealed:v1:") for value in stored.values())
    assert LITERAL not in json.dumps(stored) and "MCP_TEST_TOKEN" not in json.dumps(stored)
    key_file = tmp_path / "keys" / "k"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    messages = fake_model.requests[-1].body["messages"]
    sent = [m["content"] for m in messages if m["role"] == "tool"]
    assert sent == [f"x-token: token {TOKEN}", f"x-key: {LITERAL}"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_with_another_key_the_headers_are_reported_unreadable_not_a_crash(
    database_url: str, fake_model: FakeModelServer, mcp_url: str, tmp_path: Path
) -> None:
    first = {"CAIRN_SECRET_KEY": Fernet.generate_key().decode()}
    with cairn_server(database_url, fake_model, env=first) as server:
        _, welcome = await connected(server.url, workspace=identity("rekeyed"))
        base = f"{server.url}/v1/agents/{welcome.agent_id}/mcp-servers"
        auth = {"Authorization": f"Bearer {TEST_TOKEN}"}
        async with httpx.AsyncClient(headers=auth) as http:
            body = {"url": mcp_url, "headers": {"X-Key": LITERAL}}
            assert (await http.put(f"{base}/remote", json=body)).status_code == 200
    other = {"CAIRN_SECRET_KEY": Fernet.generate_key().decode()}
    with cairn_server(database_url, fake_model, env=other) as server:
        async with httpx.AsyncClient(headers=auth) as http:
            listed = await http.get(f"{server.url}/v1/agents/{welcome.agent_id}/mcp-servers")
    assert listed.status_code == 200, listed.text
    [shown] = [McpServerPublic.model_validate(s) for s in listed.json()]
    assert shown.headers == {"X-Key": "***"} and shown.tools == []
    assert shown.problem is not None
    assert "sealed with another key than CAIRN_SECRET_KEY" in shown.problem


def test_a_key_that_is_not_one_is_one_clear_line(tmp_path: Path) -> None:
    headers = McpHeaders(ServerKey("not a key", tmp_path / "k"), {})
    with pytest.raises(HeaderKeyError, match="CAIRN_SECRET_KEY is not a key: it must be 32"):
        headers.seal({"X-Key": LITERAL})


def test_references_resolve_from_the_environment_at_connect_time(tmp_path: Path) -> None:
    environ = {"A": "1"}
    headers = McpHeaders(ServerKey(None, tmp_path / "secret.key"), environ)
    sealed = headers.seal({"X": "${A}-${A}", "Y": "plain"})
    environ["A"] = "2"  # what the server's environment holds when it connects counts
    assert headers.resolve("s", sealed) == {"X": "2-2", "Y": "plain"}
    del environ["A"]
    with pytest.raises(HeaderReferenceError, match=r"MCP server s: header X names \$\{A\}"):
        headers.resolve("s", sealed)
    assert masked("Bearer ${A}") == "***${A}" and masked("${A}") == "${A}"
    assert os.stat(tmp_path / "secret.key").st_mode & 0o077 == 0  # made 0600 on first use


def test_the_key_file_lives_beside_a_sqlite_database() -> None:
    assert default_key_file("sqlite+aiosqlite:////srv/cairn/cairn.db") == Path(
        "/srv/cairn/secret.key"
    )
    assert default_key_file("postgresql+asyncpg://h/db").name == "secret.key"


async def test_headers_an_earlier_version_stored_in_clear_are_sealed_at_start(
    database_url: str, fake_model: FakeModelServer, tmp_path: Path
) -> None:
    database = await open_database(database_url)
    try:
        agent = await new_agent(Store(database), root_commit="c" * 40)
        await Store(database).put_mcp_server(agent.id, "old", "http://x/mcp", {"X-Key": LITERAL}, 5)
    finally:
        await database.close()
    key = Fernet.generate_key().decode()
    with cairn_server(database_url, fake_model, env={"CAIRN_SECRET_KEY": key}):
        pass
    [stored] = await raw_headers(database_url)
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert LITERAL not in json.dumps(stored) and stored["X-Key"].startswith("sealed:v1:")
    headers = McpHeaders(ServerKey(key, tmp_path / "unused"), {})
    assert headers.resolve("old", stored) == {"X-Key": LITERAL}
