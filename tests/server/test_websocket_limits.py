"""What a client cannot do to the server through the websocket: send text the database refuses
(NUL), binary frames or broken hellos, have its result refused by the database, or never read.

Tests that take `database_url` run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import socket
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_protocol import (
    PROTOCOL_VERSION,
    ErrorEvent,
    Ping,
    RunFinished,
    ToolRequest,
    ToolResult,
    ToolSettled,
    UserMessage,
)
from cairn_server.storage.db import make_engine, open_database
from sqlalchemy import text
from support.servers import TEST_TOKEN, cairn_server, call, script, sqlite_url
from support.wire import ALL_TOOLS, WORKSPACE, WireClient, connected
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def refused(client: WireClient, raw: str | bytes) -> tuple[ErrorEvent, int, str]:
    """Send a first frame; the error frame it gets, then the close code and reason."""
    await client.socket.send(raw)
    error = await client.recv()
    assert isinstance(error, ErrorEvent), error
    with pytest.raises(ConnectionClosed) as closed:
        await client.recv()
    assert closed.value.rcvd is not None
    return error, closed.value.rcvd.code, closed.value.rcvd.reason


def hello_json(**fields: Any) -> str:
    values: dict[str, Any] = {
        "type": "hello",
        "protocol_version": PROTOCOL_VERSION,
        "token": TEST_TOKEN,
        "workspace": WORKSPACE.model_dump(),
        "tools": ALL_TOOLS,
    }
    return json.dumps({**values, **fields})


# --------------------------------------------------------------------------- NUL


async def test_nul_in_hello_message_and_tool_result_completes_the_run(
    database_url: str, fake_model: FakeModelServer
) -> None:
    """`printf 'a\\0b'` as a tool result used to leave a PostgreSQL run waiting 900 s."""
    fake_model.set_script(
        script(
            {"tool_calls": [call("shell", command="printf 'a\\0b'")]},
            {"text": "It printed a, then NUL, then b."},
        )
    )
    workspace = WORKSPACE.model_copy(update={"display_name": "app\x00", "path": "/tmp/a\x00"})
    with cairn_server(database_url, fake_model) as server:
        client, _ = await connected(server.url, workspace=workspace)
        await client.send(UserMessage(text="what does printf 'a\x00b' print?"))
        request = await client.recv_until(ToolRequest)
        await client.send(ToolResult(call_id=request.call_id, status="ok", content="a\x00b"))
        settled = await client.recv_until(ToolSettled)
        assert isinstance(settled, ToolSettled) and settled.status == "ok"
        finished = await client.recv_until(RunFinished, timeout=20)
        assert isinstance(finished, RunFinished) and finished.stop_reason == "end_turn"
        sent = fake_model.requests[-1].body["messages"]
        assert sent[-1]["content"] == "a\x00b"
        assert "what does printf 'a\x00b' print?" in [m["content"] for m in sent]
        await client.close()

        again, welcome = await connected(server.url, workspace=workspace)
        assert [h.text for h in welcome.history if h.role == "user"] == [
            "what does printf 'a\x00b' print?"
        ]
        await again.close()


# --------------------------------------------------------------------------- a result not stored


REFUSE_BOOM = {
    "sqlite": "CREATE TRIGGER refuse_boom BEFORE UPDATE OF content ON tool_calls "
    "WHEN NEW.content LIKE '%boom%' BEGIN SELECT RAISE(ABORT, 'boom is refused'); END",
    "postgresql": "ALTER TABLE tool_calls ADD CONSTRAINT refuse_boom "
    "CHECK (content NOT LIKE '%boom%')",
}


async def test_a_result_the_database_refuses_settles_the_call_with_an_error(
    database_url: str, fake_model: FakeModelServer
) -> None:
    database = await open_database(database_url)  # migrated, then made to refuse "boom"
    await database.close()
    engine = make_engine(database_url)
    async with engine.begin() as connection:
        await connection.execute(text(REFUSE_BOOM[engine.dialect.name]))
    await engine.dispose()
    fake_model.set_script(
        script({"tool_calls": [call("read", path="bomb.txt")]}, {"text": "The output was lost."})
    )
    with cairn_server(database_url, fake_model) as server:
        client, _ = await connected(server.url)
        await client.send(UserMessage(text="read bomb.txt"))
        request = await client.recv_until(ToolRequest)
        await client.send(ToolResult(call_id=request.call_id, status="ok", content="boom"))
        settled = await client.recv_until(ToolSettled)
        assert isinstance(settled, ToolSettled) and settled.status == "error"
        assert "could not store its result" in (settled.reason or "")
        finished = await client.recv_until(RunFinished, timeout=20)
        assert finished.stop_reason == "end_turn"
        told = fake_model.requests[-1].body["messages"][-1]
        assert told["role"] == "tool"
        assert (
            "the call ran on the client, but the server could not store its result"
            in (told["content"])
        )
        assert "SELECT" not in told["content"] and "UPDATE" not in told["content"]


# --------------------------------------------------------------------------- frames and hellos


async def test_binary_frames_get_an_error_and_the_connection_goes_on(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        error, code, _ = await refused(await WireClient.connect(server.url), hello_json().encode())
        assert error.code == "malformed_frame" and "binary frames" in error.message
        assert code == 4400

        client, _ = await connected(server.url)
        await client.socket.send(Ping(nonce="as bytes").model_dump_json().encode())
        frame = await client.recv()
        assert isinstance(frame, ErrorEvent) and frame.code == "malformed_frame"
        assert "send each frame as JSON text" in frame.message
        await client.send(Ping(nonce="still-here"))
        assert (await client.recv()).type == "pong"
        await client.close()


async def test_broken_hellos_get_an_error_frame_and_a_close_code(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    url = sqlite_url(tmp_path)
    with cairn_server(url, fake_model) as server:
        cases: list[tuple[str, str, int, str]] = [
            (hello_json(resume_after=2**70), "malformed_frame", 4400, "resume_after"),
            (hello_json(resume_after=-1), "malformed_frame", 4400, "resume_after"),
            (hello_json(token="cairn_\x00"), "unauthorized", 4401, "invalid or missing token"),
            (hello_json(conversation="cnv_\x00"), "malformed_frame", 4404, "no conversation"),
        ]
        for raw, error_code, close_code, says in cases:
            error, code, _ = await refused(await WireClient.connect(server.url), raw)
            assert (error.code, code) == (error_code, close_code), raw
            assert says in error.message, (raw, error.message)

        # A failure inside the server while opening a session (here: a table gone) is told.
        engine = make_engine(url)
        async with engine.begin() as connection:
            await connection.execute(text("ALTER TABLE blocks RENAME TO blocks_gone"))
        await engine.dispose()
        other = WORKSPACE.model_copy(update={"root_commit": "b" * 40})
        raw = hello_json(workspace=other.model_dump())
        error, code, _ = await refused(await WireClient.connect(server.url), raw)
        assert (error.code, code) == ("internal", 1011)
        assert error.message.startswith("the server could not open the session: ")
        assert "blocks" in error.message


# --------------------------------------------------------------------------- never reading


async def test_a_client_that_never_reads_is_closed_and_its_memory_returned(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    """Each ping's 32 KiB nonce comes back in a pong the client never reads: the server
    keeps at most its backlog limit of them, then closes the client (4413) and frees them."""
    limit = 2**20
    pings = 400  # 12.5 MiB of pongs, far beyond the limit and the sockets' buffers
    closed_log = Logged("behind its events; closed")
    logging.getLogger("cairn_server.api.ws").addHandler(closed_log)
    with cairn_server(sqlite_url(tmp_path), fake_model, ws_backlog_mb=limit // 2**20) as server:
        warm, _ = await connected(server.url)  # the first connection's one-time costs
        await warm.close()
        gc.collect()
        tracemalloc.start()
        try:
            baseline = tracemalloc.get_traced_memory()[0]
            tiny = socket.create_connection(("127.0.0.1", server.port))
            tiny.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            stalled = await connect(
                server.url.replace("http", "ws") + "/v1/ws",
                sock=tiny,
                compression=None,  # pongs cross the wire at full size
                max_queue=1,
            )
            await stalled.send(hello_json())
            assert json.loads(await stalled.recv())["type"] == "welcome"

            async def flood() -> None:
                for _ in range(pings):
                    await stalled.send(Ping(nonce=os.urandom(16 * 1024).hex()).model_dump_json())

            flooding = asyncio.create_task(flood())
            await asyncio.wait_for(closed_log.seen.wait(), 30)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - baseline
            peak = tracemalloc.get_traced_memory()[1] - baseline
        finally:
            tracemalloc.stop()
            logging.getLogger("cairn_server.api.ws").removeHandler(closed_log)
        print(f"\nheld after the close: {held / 2**20:.2f} MiB, peak {peak / 2**20:.2f} MiB")
        assert held < limit, f"{held / 2**20:.1f} MiB still held after the close"
        assert peak < 4 * limit, f"peak {peak / 2**20:.1f} MiB with a {limit} byte limit"

        # Reading now drains what the sockets held, then the close code and its reason.
        pongs = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frame = json.loads(await asyncio.wait_for(stalled.recv(), 30))
                pongs += frame["type"] == "pong"
        flooding.cancel()
        with contextlib.suppress(BaseException):
            await flooding
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4413
        assert closed.value.rcvd.reason.startswith("too slow: more than 1 MiB of events")
        assert pongs < pings

        healthy, _ = await connected(server.url)  # the server is fine, and so are others
        await healthy.send(Ping(nonce="ok"))
        assert (await healthy.recv()).type == "pong"
        await healthy.close()


class Logged(logging.Handler):
    """Sets `seen` (on the test's loop) once the server logs a message holding `words`."""

    def __init__(self, words: str) -> None:
        super().__init__(logging.WARNING)
        self.words = words
        self.seen = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self._loop.call_soon_threadsafe(self.seen.set)
