"""The fake's Anthropic Messages dialect: plain and streamed answers, errors, checks.

Owns what the real API would reject (role order, empty text, tool_use/tool_result pairing,
thinking signatures), its error bodies, usage and the typed event stream.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

from starlette.responses import JSONResponse

from cairn_fakes.dialect import (
    Dialect,
    TokenCounts,
    chunks,
    error_headers,
    new_id,
)
from cairn_fakes.prompt_cache import PromptCache, anthropic_prompt
from cairn_fakes.script import ScriptedError, Turn
from cairn_fakes.state import JsonObject

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


def anthropic_unknown_model(model: str) -> JSONResponse:
    """The API's 404 not_found_error for a model it does not have."""
    return anthropic_error(ScriptedError(status=404, message=f"model: {model}"))


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
    if turn.cut_at_cap:
        return "max_tokens"
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


def anthropic_stream(body: JsonObject, turn: Turn, tokens: TokenCounts) -> list[tuple[str, bool]]:
    return anthropic_frames(str(body["model"]), turn, tokens)


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


ANTHROPIC_DIALECT = Dialect(
    problem_of=anthropic_problem,
    error_response=anthropic_error,
    prompt_of=anthropic_prompt,
    overflow_response=anthropic_overflow,
    cache_use=PromptCache.anthropic,
    request_id_header="request-id",
    answer_of=anthropic_message,
    frames_of=anthropic_stream,
    models_of=lambda state: state.anthropic_models,
    unknown_model_response=anthropic_unknown_model,
)
