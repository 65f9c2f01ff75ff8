"""The fake's OpenAI Chat Completions dialect: plain and streamed answers, errors, checks.

Owns what the real API would reject (tool-call pairing included), its error bodies, usage and
the chunk stream ending in `[DONE]`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from starlette.responses import JSONResponse

from cairn_fakes.dialect import (
    Dialect,
    TokenCounts,
    chunks,
    error_headers,
    new_id,
)
from cairn_fakes.prompt_cache import PromptCache, openai_prompt
from cairn_fakes.script import ScriptedError, Turn
from cairn_fakes.state import JsonObject

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


def openai_unknown_model(model: str) -> JSONResponse:
    """The API's 404 for a model it does not have (or this key may not use)."""
    message = f"The model `{model}` does not exist or you do not have access to it."
    return openai_error(ScriptedError(status=404, message=message), code="model_not_found")


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
    if turn.cut_at_cap:
        return "length"
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


def openai_stream(body: JsonObject, turn: Turn, tokens: TokenCounts) -> list[tuple[str, bool]]:
    asked = bool((body.get("stream_options") or {}).get("include_usage"))
    include_usage = asked and turn.reports_usage
    return openai_frames(str(body["model"]), turn, tokens, include_usage)


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


OPENAI_DIALECT = Dialect(
    problem_of=openai_problem,
    error_response=openai_error,
    prompt_of=openai_prompt,
    overflow_response=openai_overflow,
    cache_use=PromptCache.openai,
    request_id_header="x-request-id",
    answer_of=openai_completion,
    frames_of=openai_stream,
    models_of=lambda state: state.openai_models,
    unknown_model_response=openai_unknown_model,
)
