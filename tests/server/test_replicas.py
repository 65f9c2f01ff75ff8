"""Two server processes on one database, as replicas behind a load balancer: a conversation
has one running run whichever of them is asked, and the run goes on where it started."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import (
    AssistantMessage,
    Cancel,
    ErrorEvent,
    RunFinished,
    ToolRequest,
    ToolResult,
    UserMessage,
    Welcome,
)
from cairn_protocol.messages import dump_frame
from cairn_server.runtime import runtime as runtime_module
from cairn_server.runtime.bus import APPLICATION_NAME
from sqlalchemy import make_url
from support.servers import cairn_server, read_then_answer
from support.wire import WireClient, connected

# What every client of a conversation must see, on any replica, with the same seqs.
DURABLE = {"run_started", "assistant_message", "tool_request", "tool_settled", "run_finished"}


async def test_a_message_to_another_replica_while_a_run_goes_is_refused(
    database_url: str, fake: FakeModelServer
) -> None:
    fake.set_script(read_then_answer())
    with cairn_server(database_url, fake) as one, cairn_server(database_url, fake) as two:
        first, welcome = await connected(one.url, conversation="new")
        try:
            await first.send(UserMessage(text="What does app.py do?"))
            request = await first.recv_until(ToolRequest)

            second, _ = await connected(
                two.url, conversation=welcome.conversation_id, client_id="other-client"
            )
            try:
                await second.send(UserMessage(text="Something else"))
                refusal = await second.recv_until(ErrorEvent)
            finally:
                await second.close()
            assert refusal.code == "run_in_progress"
            assert "another server process" in refusal.message

            await first.send(ToolResult(call_id=request.call_id, status="ok", content="x = 1"))
            finished = await first.recv_until(RunFinished)
        finally:
            await first.close()
    assert finished.stop_reason == "end_turn"
    assert len(fake.requests) == 2, "the refused message reached no model"


@dataclass
class TwoReplicas:
    """A client that opened a new conversation on one replica, and another client of the same
    conversation on a second replica, with their welcomes."""

    first: WireClient
    welcome: Welcome
    other: WireClient
    other_welcome: Welcome
    second_url: str


@asynccontextmanager
async def two_replicas(database_url: str, fake: FakeModelServer) -> AsyncIterator[TwoReplicas]:
    fake.set_script(read_then_answer())
    with cairn_server(database_url, fake) as one, cairn_server(database_url, fake) as two:
        first, welcome = await connected(one.url, conversation="new")
        other, other_welcome = await connected(
            two.url, conversation=welcome.conversation_id, client_id="other-client"
        )
        try:
            yield TwoReplicas(first, welcome, other, other_welcome, two.url)
        finally:
            await first.close()
            await other.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_client_of_another_replica_sees_the_run_in_its_conversation(
    database_url: str, fake: FakeModelServer
) -> None:
    async with two_replicas(database_url, fake) as pair:
        first, watcher = pair.first, pair.other
        assert pair.other_welcome.seq == pair.welcome.seq
        await first.send(UserMessage(text="What does app.py do?"))
        request = await first.recv_until(ToolRequest)
        await first.send(ToolResult(call_id=request.call_id, status="ok", content="x = 1"))
        finished = await first.recv_until(RunFinished)
        seen = await watcher.recv_until(RunFinished)
        late, rejoined = await connected(pair.second_url, conversation=pair.welcome.conversation_id)
        await late.close()
    durable = [f for f in first.seen if f.type in DURABLE]
    relayed = [f for f in watcher.seen if f.type in DURABLE]
    assert [(f.seq, f.type) for f in relayed] == [(f.seq, f.type) for f in durable]
    assert seen.run_id == finished.run_id and seen.seq == finished.seq
    assert rejoined.seq == finished.seq, "a welcome on another replica is not stale"
    texts = [m.text for m in rejoined.history if m.role == "assistant"]
    assert texts[-1] == "It sets x."


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_events_stored_while_a_replica_could_not_listen_still_reach_its_clients(
    database_url: str, fake: FakeModelServer
) -> None:
    with cairn_server(database_url, fake) as server:
        watcher, welcome = await connected(server.url, conversation="new")
        try:
            # As another replica would while this one's listening connection was down: the
            # event is stored, its announcement never heard.
            await store_unannounced(database_url, welcome.conversation_id, "from elsewhere")
            assert await drop_listeners(database_url) == 1
            seen = await watcher.recv_until(AssistantMessage, timeout=30)
        finally:
            await watcher.close()
    assert (seen.seq, seen.text) == (welcome.seq + 1, "from elsewhere")


async def admin(database_url: str) -> Any:
    url = make_url(database_url).set(drivername="postgresql")
    return await asyncpg.connect(url.render_as_string(hide_password=False))


async def store_unannounced(database_url: str, conversation_id: str, text: str) -> None:
    connection = await admin(database_url)
    try:
        async with connection.transaction():
            seq = await connection.fetchval(
                "UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq",
                conversation_id,
            )
            event = AssistantMessage(seq=seq, run_id="run_elsewhere", text=text, tool_calls=[])
            await connection.execute(
                "INSERT INTO events (conversation_id, seq, type, payload, created_at) "
                "VALUES ($1, $2, 'assistant_message', $3, now())",
                conversation_id,
                seq,
                dump_frame(event),
            )
    finally:
        await connection.close()


async def drop_listeners(database_url: str) -> int:
    """End every event listener's connection to the test database, as a network blip would;
    how many there were."""
    connection = await admin(database_url)
    try:
        ended: int = await connection.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1 AND datname = current_database()",
            APPLICATION_NAME,
        )
    finally:
        await connection.close()
    return ended


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_replica_that_starts_ends_no_live_replicas_run(
    database_url: str, fake: FakeModelServer
) -> None:
    fake.set_script(read_then_answer())
    with cairn_server(database_url, fake) as one:
        first, _ = await connected(one.url, conversation="new")
        try:
            await first.send(UserMessage(text="What does app.py do?"))
            request = await first.recv_until(ToolRequest)
            with cairn_server(database_url, fake):  # a rolling deploy starts another one
                pass
            await first.send(ToolResult(call_id=request.call_id, status="ok", content="x = 1"))
            finished = await first.recv_until(RunFinished)
        finally:
            await first.close()
    assert finished.stop_reason == "end_turn"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_run_of_a_replica_that_is_gone_is_ended_by_a_live_one(
    database_url: str, fake: FakeModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime_module, "SWEEP_S", 0.2)
    with cairn_server(database_url, fake) as server:
        watcher, welcome = await connected(server.url, conversation="new")
        try:
            # As a replica killed mid-run leaves it: running, its owner's lock let go.
            connection = await admin(database_url)
            try:
                await connection.execute(
                    "INSERT INTO runs (id, conversation_id, status, model, steps, input_tokens,"
                    " cached_input_tokens, output_tokens, cost_usd, created_at, owner) VALUES"
                    " ('run_orphan', $1, 'running', 'm', 2, 10, 0, 5, 0, now(), 'rep_gone')",
                    welcome.conversation_id,
                )
            finally:
                await connection.close()
            ended = await watcher.recv_until(RunFinished, timeout=30)
        finally:
            await watcher.close()
    assert (ended.run_id, ended.stop_reason, ended.steps) == ("run_orphan", "server_restart", 2)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_cancel_sent_to_another_replica_stops_the_run(
    database_url: str, fake: FakeModelServer
) -> None:
    async with two_replicas(database_url, fake) as pair:
        await pair.first.send(UserMessage(text="What does app.py do?"))
        await pair.first.recv_until(ToolRequest)
        await pair.other.send(Cancel(reason="stopped from my other terminal"))
        finished = await pair.first.recv_until(RunFinished)
        seen = await pair.other.recv_until(RunFinished)
    assert (finished.stop_reason, finished.detail) == (
        "cancelled",
        "stopped from my other terminal",
    )
    assert seen.run_id == finished.run_id
