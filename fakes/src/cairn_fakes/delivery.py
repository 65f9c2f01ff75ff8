"""How an answer leaves the fake: a JSON body or an event stream, paced, or cut short.

Owns the scripted network faults (a dropped connection, a stream that ends early) and the
log filter that keeps a scripted drop from looking like a bug.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from cairn_fakes.script import Turn
from cairn_fakes.state import FakeModelState, JsonObject, timed


class DroppedConnection(Exception):
    """Raised inside a response so that uvicorn cuts the connection (a scripted fault)."""


class DroppingResponse(StreamingResponse):
    """Sends its status, headers and body parts, then drops the connection before the
    body is complete, as a failing network or proxy would."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        async for part in self.body_iterator:
            body = part if isinstance(part, bytes | memoryview) else part.encode(self.charset)
            await send({"type": "http.response.body", "body": bytes(body), "more_body": True})
        raise DroppedConnection("scripted fault: drop_stream")


class HideDroppedConnections(logging.Filter):
    """uvicorn logs an app exception with its traceback; a scripted drop is not a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DroppedConnection))


HIDE_DROPS = HideDroppedConnections()


def hide_dropped_connections() -> None:
    logger = logging.getLogger("uvicorn.error")
    if HIDE_DROPS not in logger.filters:
        logger.addFilter(HIDE_DROPS)


def frames_before_drop(frames: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """The frames sent before a drop: through the first half of the text chunks (at least
    one), or just the first frame of an answer without text."""
    text_positions = [i for i, (_, is_text) in enumerate(frames) if is_text]
    if not text_positions:
        return frames[:1]
    return frames[: text_positions[(len(text_positions) - 1) // 2] + 1]


async def paced(frames: list[tuple[str, bool]], turn: Turn) -> AsyncIterator[str]:
    for frame, is_text in frames:
        if is_text and turn.chunk_delay_s:
            await asyncio.sleep(turn.chunk_delay_s)
        yield frame


async def one_part(data: bytes) -> AsyncIterator[bytes]:
    yield data


def event_stream(
    state: FakeModelState, turn: Turn, frames: list[tuple[str, bool]], headers: dict[str, str]
) -> Response:
    """The streamed answer, or its first part then a dropped connection (drop_stream) or a
    clean end (end_stream_early)."""
    if turn.fault == "drop_stream":
        events = paced(frames_before_drop(frames), turn)
        return DroppingResponse(events, media_type="text/event-stream", headers=headers)
    if turn.fault == "end_stream_early":
        frames = frames_before_drop(frames)
    events = timed(paced(frames, turn), state.log)
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)


def json_answer(turn: Turn, payload: JsonObject, headers: dict[str, str]) -> Response:
    """The plain answer, or half of its body and a dropped connection (fault drop_stream)."""
    if turn.fault == "drop_stream":
        data = json.dumps(payload).encode()
        sized = {**headers, "content-length": str(len(data))}
        body = one_part(data[: len(data) // 2])
        return DroppingResponse(body, media_type="application/json", headers=sized)
    return JSONResponse(payload, headers=headers)
