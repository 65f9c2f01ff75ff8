"""The fake model server: one ASGI app speaking the OpenAI and Anthropic wire protocols.

Owns the HTTP side of the fakes: request checks like the real APIs', plain and streamed
answers built from the script, provider-shaped errors (context overflow included), scripted
network faults, and the record of every request.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import re
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from cairn_server.context.tokens import count_tokens
from cairn_server.fakes.prompt_cache import (
    CacheUse,
    Prompt,
    PromptCache,
    anthropic_prompt,
    openai_prompt,
)
from cairn_server.fakes.script import Script, ScriptedError, Turn

JsonObject = dict[str, Any]
Endpoint = Callable[[Request], Awaitable[Response]]


# --------------------------------------------------------------------------- recording


@dataclass(frozen=True)
class RecordedRequest:
    """A request exactly as it reached the fake: path, lower-cased headers, JSON body."""

    path: str
    headers: dict[str, str]
    body: JsonObject
    received_at: float = 0.0  # time.perf_counter() on arrival, for latency benchmarks


class RequestLog:
    """Every request the fake received, in order; safe across threads.

    With `record_path`, each request is also appended to that file as one JSON line.
    """

    def __init__(self, record_path: Path | None = None) -> None:
        self._requests: list[RecordedRequest] = []
        self.answer_times: list[float] = []  # perf_counter() when each answer was fully sent
        self._lock = threading.Lock()
        self._record_path = record_path

    def append(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            if self._record_path is not None:
                with self._record_path.open("a", encoding="utf-8") as record:
                    record.write(json.dumps(asdict(request)) + "\n")

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self.answer_times.clear()

    def mark_answered(self) -> None:
        with self._lock:
            self.answer_times.append(time.perf_counter())


async def timed(events: AsyncIterator[str], log: RequestLog) -> AsyncIterator[str]:
    """Pass the stream through, noting when its last byte was handed to the server."""
    async for event in events:
        yield event
    log.mark_answered()


class FakeModelState:
    """What the app serves from: the current script (replaceable), the request log, the
    simulated prompt caches and the context window (None: unlimited)."""

    def __init__(self, script: Script, log: RequestLog, context_window: int | None = None) -> None:
        self._script = script
        self._lock = threading.Lock()
        self._context_window: int | None = None
        self.context_window = context_window
        self.log = log
        self.cache = PromptCache()

    @property
    def script(self) -> Script:
        with self._lock:
            return self._script

    def set_script(self, script: Script, *, keep_cache: bool = False) -> None:
        """A new script is a new scenario: the prompt caches start empty unless kept."""
        with self._lock:
            self._script = script
        if not keep_cache:
            self.cache.clear()

    @property
    def context_window(self) -> int | None:
        with self._lock:
            return self._context_window

    @context_window.setter
    def context_window(self, tokens: int | None) -> None:
        if tokens is not None and tokens < 1:
            raise ValueError(f"a context window must be at least 1 token, not {tokens}")
        with self._lock:
            self._context_window = tokens

    def next_turn(self) -> Turn:
        return self.script.next_turn()


# --------------------------------------------------------------------------- shared helpers


@dataclass(frozen=True)
class TokenCounts:
    """Token counts of one answer: prompt tokens (all of them, cached or not), those read
    from and written to the prompt cache, and the answer's tokens."""

    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cache_write_tokens: int = 0


def answer_tokens(turn: Turn) -> int:
    calls = "".join(f"{call.name}{call.arguments_text()}" for call in turn.tool_calls)
    return count_tokens(turn.thinking + turn.text + calls)


def token_counts(prompt: Prompt, cache_use: CacheUse, turn: Turn) -> TokenCounts:
    """Counts for this answer; a scripted cached_input_tokens replaces the simulated cache."""
    total = prompt.tokens
    if turn.cached_input_tokens:
        cache_use = CacheUse(read=min(turn.cached_input_tokens, total))
    return TokenCounts(
        input_tokens=total,
        cached_input_tokens=cache_use.read,
        output_tokens=answer_tokens(turn),
        cache_write_tokens=cache_use.written,
    )


def chunks(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


async def read_json_body(request: Request) -> tuple[bytes, JsonObject | None]:
    """The raw body and its JSON object, or None when it is not a JSON object."""
    raw = await request.body()
    try:
        body = json.loads(raw)
    except ValueError:
        return raw, None
    return raw, body if isinstance(body, dict) else None


def record(state: FakeModelState, request: Request, body: JsonObject | None) -> None:
    headers = {name.lower(): value for name, value in request.headers.items()}
    state.log.append(
        RecordedRequest(request.url.path, headers, body or {}, received_at=time.perf_counter())
    )


def error_headers(error: ScriptedError, request_id_header: str) -> dict[str, str]:
    headers = {request_id_header: new_id("req_")}
    if error.retry_after_ms is not None:
        headers["retry-after-ms"] = str(error.retry_after_ms)
    if error.retry_after_s is not None:
        seconds = error.retry_after_s
        headers["retry-after"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
    return headers


# --------------------------------------------------------------------------- network faults


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


# --------------------------------------------------------------------------- OpenAI


OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


def openai_error(
    error: ScriptedError, *, code: str | None = None, param: str | None = None
) -> JSONResponse:
    error_type, default_code = OPENAI_ERROR_TYPES.get(error.status, ("server_error", None))
    payload = {
        "error": {
            "message": error.message,
            "type": error_type,
            "param": param,
            "code": code or default_code,
        }
    }
    return JSONResponse(payload, error.status, headers=error_headers(error, "x-request-id"))


def openai_overflow(prompt_tokens: int, window: int) -> JSONResponse:
    message = (
        f"This model's maximum context length is {window} tokens. However, your messages "
        f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages."
    )
    error = ScriptedError(status=400, message=message)
    return openai_error(error, code="context_length_exceeded", param="messages")


def openai_usage(tokens: TokenCounts) -> JsonObject:
    return {
        "prompt_tokens": tokens.input_tokens,
        "completion_tokens": tokens.output_tokens,
        "total_tokens": tokens.input_tokens + tokens.output_tokens,
        "prompt_tokens_details": {"cached_tokens": tokens.cached_input_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def openai_finish_reason(turn: Turn) -> str:
    return "tool_calls" if turn.tool_calls else "stop"


def openai_completion(model: str, turn: Turn, tokens: TokenCounts) -> JsonObject:
    message: JsonObject = {
        "role": "assistant",
        "content": turn.text or None,
        "refusal": None,
        "annotations": [],
    }
    if turn.tool_calls:
        message["tool_calls"] = [
            {
                "id": new_id("call_"),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_text()},
            }
            for call in turn.tool_calls
        ]
    return {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": openai_finish_reason(turn),
            }
        ],
        "usage": openai_usage(tokens),
        "service_tier": "default",
        "system_fingerprint": "fp_cairn_fake",
    }


def openai_chunk_deltas(turn: Turn) -> Iterator[tuple[JsonObject, bool]]:
    """Each streamed choice delta, flagged True when it carries visible text."""
    yield {"role": "assistant", "content": "" if turn.text else None, "refusal": None}, False
    for piece in chunks(turn.text, turn.chunk_size):
        yield {"content": piece}, True
    for index, call in enumerate(turn.tool_calls):
        header = {
            "index": index,
            "id": new_id("call_"),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield {"tool_calls": [header]}, False
        for fragment in chunks(call.arguments_text(), turn.chunk_size):
            yield {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}, False


def openai_stream_chunks(
    model: str, turn: Turn, tokens: TokenCounts, include_usage: bool
) -> Iterator[tuple[JsonObject, bool]]:
    base: JsonObject = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "service_tier": "default",
        "system_fingerprint": "fp_cairn_fake",
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: JsonObject, finish_reason: str | None = None) -> JsonObject:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**base, "choices": [choice]}

    for delta, is_text in openai_chunk_deltas(turn):
        yield chunk(delta), is_text
    yield chunk({}, openai_finish_reason(turn)), False
    if include_usage:
        yield {**base, "choices": [], "usage": openai_usage(tokens)}, False


def openai_frames(
    model: str, turn: Turn, tokens: TokenCounts, include_usage: bool
) -> list[tuple[str, bool]]:
    frames = [
        (f"data: {json.dumps(payload)}\n\n", is_text)
        for payload, is_text in openai_stream_chunks(model, turn, tokens, include_usage)
    ]
    return [*frames, ("data: [DONE]\n\n", False)]


@dataclass(frozen=True)
class Dialect:
    """What differs between the two APIs around a turn: checks, errors, prompt, cache."""

    problem_of: Callable[[JsonObject], str | None]
    error_response: Callable[[ScriptedError], Response]
    prompt_of: Callable[[JsonObject], Prompt]
    overflow_response: Callable[[int, int], Response]
    cache_use: Callable[[PromptCache, Prompt], CacheUse]


async def take_turn(
    state: FakeModelState, request: Request, dialect: Dialect
) -> tuple[JsonObject, Turn, TokenCounts] | Response:
    """Record the request and take the script's next turn with its token counts, or answer
    the error the real API would give (bad body, prompt over the context window: no turn
    is used up) or the script asks for (after its delay)."""
    _raw, body = await read_json_body(request)
    record(state, request, body)
    if body is None:
        error = ScriptedError(status=400, message="the body must be a JSON object")
        return dialect.error_response(error)
    problem = dialect.problem_of(body)
    if problem is not None:
        return dialect.error_response(ScriptedError(status=400, message=problem))
    prompt = dialect.prompt_of(body)
    window = state.context_window
    if window is not None and prompt.tokens > window:
        return dialect.overflow_response(prompt.tokens, window)
    turn = state.next_turn()
    if turn.delay_s:
        await asyncio.sleep(turn.delay_s)
    if turn.error is not None:
        return dialect.error_response(turn.error)
    return body, turn, token_counts(prompt, dialect.cache_use(state.cache, prompt), turn)


def openai_handler(state: FakeModelState) -> Endpoint:
    async def chat_completions(request: Request) -> Response:
        taken = await take_turn(state, request, OPENAI_DIALECT)
        if isinstance(taken, Response):
            return taken
        body, turn, tokens = taken
        model = str(body["model"])
        headers = {"x-request-id": new_id("req_")}
        if not body.get("stream"):
            return json_answer(turn, openai_completion(model, turn, tokens), headers)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return event_stream(state, turn, openai_frames(model, turn, tokens, include_usage), headers)

    return chat_completions


def openai_problem(body: JsonObject) -> str | None:
    """What the real Chat Completions API would reject in this body, if anything."""
    if not isinstance(body.get("model"), str):
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array"
    for tool in body.get("tools") or []:
        if tool.get("type") != "function" or not tool.get("function", {}).get("name"):
            return "each tool must be {'type': 'function', 'function': {'name': ...}}"
    return openai_tool_pairing_problem(messages)


def openai_tool_pairing_problem(messages: list[JsonObject]) -> str | None:
    """Every assistant tool call answered by a tool message right after it, and only those."""
    open_calls: set[str] = set()
    for position, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            call_id = message.get("tool_call_id")
            if call_id not in open_calls:
                return (
                    f"messages[{position}]: messages with role 'tool' must be a response to a "
                    f"preceeding message with 'tool_calls' (unknown tool_call_id {call_id!r})"
                )
            open_calls.discard(call_id)
            continue
        if open_calls:
            return (
                "an assistant message with 'tool_calls' must be followed by tool messages "
                f"responding to each 'tool_call_id'; missing: {sorted(open_calls)}"
            )
        if role not in ("system", "developer", "user", "assistant"):
            return f"messages[{position}]: invalid role {role!r}"
        if role == "assistant":
            open_calls = {call.get("id") for call in message.get("tool_calls") or []}
    return None


# --------------------------------------------------------------------------- OpenAI embeddings

# A test stand-in, NOT a semantic model: each text's vector counts its hashed words and
# character trigrams in 256 dimensions, L2-normalised. Texts sharing words or spellings come
# out close; synonyms do not. Deterministic, instant, nothing downloaded.
FAKE_EMBEDDING_DIMENSIONS = 256


def fake_embedding(text: str, dimensions: int = FAKE_EMBEDDING_DIMENSIONS) -> list[float]:
    vector = [0.0] * dimensions
    lowered = text.lower()
    words = re.findall(r"\w+", lowered)
    padded = f" {' '.join(words)} "
    features = [f"w:{word}" for word in words]
    features += [f"t:{padded[i : i + 3]}" for i in range(len(padded) - 2)]
    for feature in features:
        digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % dimensions
        vector[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [value / norm for value in vector]


def embeddings_problem(body: JsonObject) -> str | None:
    """What the real Embeddings API would reject in this body, if anything."""
    if not isinstance(body.get("model"), str):
        return "you must provide a model parameter"
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return "'input' must be a non-empty string or array of strings"
    if any(not text for text in texts):
        return "'input' cannot contain an empty string"
    if body.get("encoding_format", "float") not in ("float", "base64"):
        return "'encoding_format' must be 'float' or 'base64'"
    return None


def embeddings_handler(state: FakeModelState) -> Endpoint:
    async def embeddings(request: Request) -> Response:
        _raw, body = await read_json_body(request)
        record(state, request, body)
        if body is None:
            return openai_error(ScriptedError(status=400, message="the body must be a JSON object"))
        problem = embeddings_problem(body)
        if problem is not None:
            return openai_error(ScriptedError(status=400, message=problem))
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        data = []
        for index, text in enumerate(texts):
            vector = fake_embedding(text)
            embedding: list[float] | str = vector
            if body.get("encoding_format") == "base64":
                embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(text) // 4 + 1 for text in texts)
        payload = {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return JSONResponse(payload, headers={"x-request-id": new_id("req_")})

    return embeddings


# --------------------------------------------------------------------------- Anthropic


ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def anthropic_error(error: ScriptedError) -> JSONResponse:
    payload = {
        "type": "error",
        "error": {
            "type": ANTHROPIC_ERROR_TYPES.get(error.status, "api_error"),
            "message": error.message,
        },
    }
    headers = error_headers(error, "request-id")
    payload["request_id"] = headers["request-id"]  # the same id in the body and the header
    return JSONResponse(payload, error.status, headers=headers)


def anthropic_overflow(prompt_tokens: int, window: int) -> JSONResponse:
    message = f"prompt is too long: {prompt_tokens} tokens > {window} maximum"
    return anthropic_error(ScriptedError(status=400, message=message))


def anthropic_usage(tokens: TokenCounts, output_tokens: int) -> JsonObject:
    """input_tokens counts only the prompt tokens neither read from nor written to cache."""
    uncached = tokens.input_tokens - tokens.cached_input_tokens - tokens.cache_write_tokens
    return {
        "input_tokens": uncached,
        "cache_creation_input_tokens": tokens.cache_write_tokens,
        "cache_read_input_tokens": tokens.cached_input_tokens,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def anthropic_stop_reason(turn: Turn) -> str:
    return "tool_use" if turn.tool_calls else "end_turn"


def anthropic_input(arguments_text: str, fallback: JsonObject) -> JsonObject:
    """A tool_use block's input: the scripted raw arguments when they are a JSON object."""
    try:
        parsed = json.loads(arguments_text)
    except ValueError:
        return fallback
    return parsed if isinstance(parsed, dict) else fallback


def thinking_signature(thinking: str) -> str:
    """A stand-in for the real signature: any edit to the thinking text breaks it."""
    return "fake-signature-" + hashlib.sha256(thinking.encode()).hexdigest()[:32]


def anthropic_message(model: str, turn: Turn, tokens: TokenCounts) -> JsonObject:
    content: list[JsonObject] = []
    if turn.thinking:
        signature = thinking_signature(turn.thinking)
        content.append({"type": "thinking", "thinking": turn.thinking, "signature": signature})
    if turn.text:
        content.append({"type": "text", "text": turn.text})
    for call in turn.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": new_id("toolu_"),
                "name": call.name,
                "input": anthropic_input(call.arguments_text(), call.arguments),
            }
        )
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": anthropic_stop_reason(turn),
        "stop_sequence": None,
        "usage": anthropic_usage(tokens, tokens.output_tokens),
    }


def anthropic_stream_events(
    model: str, turn: Turn, tokens: TokenCounts
) -> Iterator[tuple[JsonObject, bool]]:
    """Each streamed event, flagged True when it carries visible text."""
    start = anthropic_message(model, turn, tokens)
    start.update(content=[], stop_reason=None, usage=anthropic_usage(tokens, 1))
    yield {"type": "message_start", "message": start}, False
    yield {"type": "ping"}, False
    index = 0
    if turn.thinking:
        yield from anthropic_thinking_events(index, turn)
        index += 1
    if turn.text:
        block = {"type": "text", "text": ""}
        yield {"type": "content_block_start", "index": index, "content_block": block}, False
        for piece in chunks(turn.text, turn.chunk_size):
            delta = {"type": "text_delta", "text": piece}
            yield {"type": "content_block_delta", "index": index, "delta": delta}, True
        yield {"type": "content_block_stop", "index": index}, False
        index += 1
    for call in turn.tool_calls:
        tool_block: JsonObject = {
            "type": "tool_use",
            "id": new_id("toolu_"),
            "name": call.name,
            "input": {},
        }
        yield {"type": "content_block_start", "index": index, "content_block": tool_block}, False
        for fragment in chunks(call.arguments_text(), turn.chunk_size):
            delta = {"type": "input_json_delta", "partial_json": fragment}
            yield {"type": "content_block_delta", "index": index, "delta": delta}, False
        yield {"type": "content_block_stop", "index": index}, False
        index += 1
    yield (
        {
            "type": "message_delta",
            "delta": {"stop_reason": anthropic_stop_reason(turn), "stop_sequence": None},
            "usage": {"output_tokens": tokens.output_tokens},
        },
        False,
    )
    yield {"type": "message_stop"}, False


def anthropic_thinking_events(index: int, turn: Turn) -> Iterator[tuple[JsonObject, bool]]:
    block = {"type": "thinking", "thinking": "", "signature": ""}
    yield {"type": "content_block_start", "index": index, "content_block": block}, False
    for piece in chunks(turn.thinking, turn.chunk_size):
        delta = {"type": "thinking_delta", "thinking": piece}
        yield {"type": "content_block_delta", "index": index, "delta": delta}, False
    signature = {"type": "signature_delta", "signature": thinking_signature(turn.thinking)}
    yield {"type": "content_block_delta", "index": index, "delta": signature}, False
    yield {"type": "content_block_stop", "index": index}, False


def anthropic_frames(model: str, turn: Turn, tokens: TokenCounts) -> list[tuple[str, bool]]:
    return [
        (f"event: {event['type']}\ndata: {json.dumps(event)}\n\n", is_text)
        for event, is_text in anthropic_stream_events(model, turn, tokens)
    ]


def anthropic_handler(state: FakeModelState) -> Endpoint:
    async def messages(request: Request) -> Response:
        taken = await take_turn(state, request, ANTHROPIC_DIALECT)
        if isinstance(taken, Response):
            return taken
        body, turn, tokens = taken
        model = str(body["model"])
        headers = {"request-id": new_id("req_")}
        if not body.get("stream"):
            return json_answer(turn, anthropic_message(model, turn, tokens), headers)
        return event_stream(state, turn, anthropic_frames(model, turn, tokens), headers)

    return messages


def anthropic_problem(body: JsonObject) -> str | None:
    """What the real Messages API would reject in this body, if anything."""
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for tool in body.get("tools") or []:
        if not tool.get("name") or not isinstance(tool.get("input_schema"), dict):
            return "tools: each tool needs a name and an input_schema object"
    previous_tool_uses: set[str] = set()
    for position, message in enumerate(messages):
        problem = anthropic_message_problem(position, message, previous_tool_uses)
        if problem is not None:
            return problem
        previous_tool_uses = {
            block["id"] for block in content_blocks(message) if block.get("type") == "tool_use"
        }
    return None


def content_blocks(message: JsonObject) -> list[JsonObject]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else []


def anthropic_message_problem(
    position: int, message: JsonObject, previous_tool_uses: set[str]
) -> str | None:
    """Role order, non-empty text, and tool_use/tool_result pairing, as the real API checks."""
    role = message.get("role")
    expected = "user" if position % 2 == 0 else "assistant"
    where = f"messages.{position}"
    if role != expected:
        return f"{where}: roles must alternate user/assistant, starting with user (got {role!r})"
    blocks = content_blocks(message)
    if not blocks:
        return f"{where}: content must be non-empty"
    for block in blocks:
        if block.get("type") == "text" and not block.get("text"):
            return f"{where}: text content blocks must be non-empty"
        if block.get("type") == "thinking" and block.get("signature") != thinking_signature(
            str(block.get("thinking"))
        ):
            return f"{where}: Invalid `signature` in `thinking` block"
    results = [block for block in blocks if block.get("type") == "tool_result"]
    answered = {block.get("tool_use_id") for block in results}
    if blocks[: len(results)] != results:
        return f"{where}: tool_result blocks must come first in the user message content"
    if answered - previous_tool_uses:
        unknown = sorted(str(call_id) for call_id in answered - previous_tool_uses)
        return f"{where}: unexpected tool_use_id in tool_result blocks: {unknown}"
    if previous_tool_uses - answered:
        return (
            f"{where}: tool_use ids were found without tool_result blocks immediately after: "
            f"{sorted(previous_tool_uses - answered)}"
        )
    return None


# --------------------------------------------------------------------------- the app


OPENAI_DIALECT = Dialect(
    problem_of=openai_problem,
    error_response=openai_error,
    prompt_of=openai_prompt,
    overflow_response=openai_overflow,
    cache_use=PromptCache.openai,
)
ANTHROPIC_DIALECT = Dialect(
    problem_of=anthropic_problem,
    error_response=anthropic_error,
    prompt_of=anthropic_prompt,
    overflow_response=anthropic_overflow,
    cache_use=PromptCache.anthropic,
)


def create_app(state: FakeModelState) -> Starlette:
    hide_dropped_connections()
    return Starlette(
        routes=[
            Route("/v1/chat/completions", openai_handler(state), methods=["POST"]),
            Route("/v1/embeddings", embeddings_handler(state), methods=["POST"]),
            Route("/v1/messages", anthropic_handler(state), methods=["POST"]),
        ]
    )
