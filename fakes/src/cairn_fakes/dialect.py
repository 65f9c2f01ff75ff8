"""What every dialect of the fake shares around one model turn.

Owns taking a turn (request checks, context overflow, scripted delay and error), its token
counts, the one handler every API's endpoint is (told apart by its `Dialect`), and the small
helpers each API's answers are built from.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from cairn_server.context.tokens import count_tokens
from starlette.requests import Request
from starlette.responses import Response

from cairn_fakes.delivery import event_stream, json_answer
from cairn_fakes.prompt_cache import CacheUse, Prompt, PromptCache
from cairn_fakes.script import ScriptedError, Turn
from cairn_fakes.state import FakeModelState, JsonObject, RecordedRequest

Endpoint = Callable[[Request], Awaitable[Response]]


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


def prompt_tokens(prompt: Prompt, state: FakeModelState) -> int:
    """The prompt's tokens as the imitated model's tokenizer counts them (token_scale times
    cl100k's count)."""
    return round(prompt.tokens * state.token_scale)


def token_counts(
    prompt: Prompt, cache_use: CacheUse, turn: Turn, total: int | None = None
) -> TokenCounts:
    """Counts for this answer (`total`: the prompt's, when the model's tokenizer is not
    cl100k); a scripted cached_input_tokens replaces the simulated cache."""
    total = prompt.tokens if total is None else total
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


@dataclass(frozen=True)
class Dialect:
    """What differs between the two APIs around a turn: checks, errors, prompt, cache, and
    the answer (whole, or as stream frames for the request's body)."""

    problem_of: Callable[[JsonObject], str | None]
    error_response: Callable[[ScriptedError], Response]
    prompt_of: Callable[[JsonObject], Prompt]
    overflow_response: Callable[[int, int], Response]
    cache_use: Callable[[PromptCache, Prompt], CacheUse]
    request_id_header: str
    answer_of: Callable[[str, Turn, TokenCounts], JsonObject]
    frames_of: Callable[[JsonObject, Turn, TokenCounts], list[tuple[str, bool]]]
    models_of: Callable[[FakeModelState], tuple[str, ...]]
    unknown_model_response: Callable[[str], Response]


async def take_turn(
    state: FakeModelState, request: Request, dialect: Dialect
) -> tuple[JsonObject, Turn, TokenCounts] | Response:
    """Record the request and take the script's next turn with its token counts, or answer
    the error the real API would give (bad body, a model it does not list, prompt over the
    context window: no turn is used up) or the script asks for (after its delay)."""
    _raw, body = await read_json_body(request)
    record(state, request, body)
    if body is None:
        error = ScriptedError(status=400, message="the body must be a JSON object")
        return dialect.error_response(error)
    problem = dialect.problem_of(body)
    if problem is not None:
        return dialect.error_response(ScriptedError(status=400, message=problem))
    if body["model"] not in dialect.models_of(state):
        return dialect.unknown_model_response(str(body["model"]))
    prompt = dialect.prompt_of(body)
    window, total = state.context_window, prompt_tokens(prompt, state)
    if window is not None and total > window:
        return dialect.overflow_response(total, window)
    turn = state.next_turn()
    if turn.delay_s:
        await asyncio.sleep(turn.delay_s)
    if turn.error is not None:
        return dialect.error_response(turn.error)
    return body, turn, token_counts(prompt, dialect.cache_use(state.cache, prompt), turn, total)


def turn_handler(state: FakeModelState, dialect: Dialect) -> Endpoint:
    """The endpoint of one API: a scripted turn answered whole or streamed, as asked."""

    async def answer(request: Request) -> Response:
        taken = await take_turn(state, request, dialect)
        if isinstance(taken, Response):
            return taken
        body, turn, tokens = taken
        headers = {dialect.request_id_header: new_id("req_")}
        if not body.get("stream"):
            return json_answer(turn, dialect.answer_of(str(body["model"]), turn, tokens), headers)
        return event_stream(state, turn, dialect.frames_of(body, turn, tokens), headers)

    return answer
