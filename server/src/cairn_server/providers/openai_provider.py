"""OpenAI Chat Completions, and any OpenAI-compatible server (vLLM, Ollama, llama.cpp).

Owns the translation between the provider-neutral messages/events and that wire format,
through the official `openai` SDK, streamed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Literal

import openai
from cairn_protocol import Usage
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
)

from cairn_server.domain import ModelMessage, ModelRequest, ModelStopReason, ToolCall, ToolSpec
from cairn_server.providers.base import (
    Completed,
    ContextOverflowError,
    ProviderError,
    StreamEvent,
    TextDelta,
    ToolCallReady,
    matched_number,
    overflow_error,
    unreadable_error,
)
from cairn_server.providers.pricing import priced_usage
from cairn_server.providers.retry import (
    EMPTY,
    ENDED_EARLY,
    Failure,
    StreamInterrupted,
    status_failure,
)
from cairn_server.providers.sdk import SdkFailures, SdkProvider, stop_reason_of, until_broken
from cairn_server.providers.tool_use import ServerKind, ToolUse, server_kind, tool_use

log = logging.getLogger(__name__)

API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
OFFICIAL_HOST = "api.openai.com"
COMPLETIONS = "/chat/completions"
ToolChoice = Literal["none", "auto", "required"]

STOP_REASONS: dict[str, ModelStopReason] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
}


# --------------------------------------------------------------------------- request


def wire_tool_call(call: ToolCall) -> ChatCompletionMessageFunctionToolCallParam:
    # Servers that template the history (vLLM) parse stored arguments; malformed ones would
    # fail the whole request, so they go back as {} (the tool result explains the error).
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments_json},
    }


def wire_message(message: ModelMessage) -> ChatCompletionMessageParam:
    if message.role == "user":
        return {"role": "user", "content": message.content}
    if message.role == "tool":
        # Chat Completions has no error flag: an error's text says so itself ("Error: ...").
        content = message.content
        if message.is_error and not content.startswith("Error:"):
            content = f"Error: {content}"
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": content}
    if not message.tool_calls:
        return {"role": "assistant", "content": message.content}
    return {
        "role": "assistant",
        "content": message.content or None,
        "tool_calls": [wire_tool_call(call) for call in message.tool_calls],
    }


def wire_messages(request: ModelRequest) -> list[ChatCompletionMessageParam]:
    messages: list[ChatCompletionMessageParam] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend(wire_message(message) for message in request.messages)
    return messages


def wire_tool(tool: ToolSpec) -> ChatCompletionFunctionToolParam:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


# --------------------------------------------------------------------------- response


@dataclass
class PartialToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class StreamState:
    """What the chunks have said so far; compatible servers may omit any optional field."""

    calls: dict[int, PartialToolCall] = field(default_factory=dict)
    finish_reason: str | None = None
    chunks: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0

    def add(self, chunk: object) -> str:
        """Take in one chunk, as the JSON the server sent (read as data, not built into the
        SDK's models: a model per chunk cost more than the rest of a token's handling);
        return the text it carried (possibly empty). Fields of the wrong type are ignored."""
        if not isinstance(chunk, dict):
            return ""
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.input_tokens = _count(usage.get("prompt_tokens"))
            self.output_tokens = _count(usage.get("completion_tokens"))
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens") if isinstance(details, dict) else 0
            self.cached_input_tokens = _count(cached)
        text = ""
        for choice in _objects(chunk.get("choices")):
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                text += content if isinstance(content, str) else ""
                for fragment in _objects(delta.get("tool_calls")):
                    self.add_tool_fragment(fragment)
            reason = choice.get("finish_reason")
            if isinstance(reason, str) and reason:
                self.finish_reason = reason
        return text

    def add_tool_fragment(self, fragment: dict[str, object]) -> None:
        index = fragment.get("index")
        if not isinstance(index, int):  # a server that leaves it out: an id starts a call
            index = len(self.calls) if fragment.get("id") or not self.calls else max(self.calls)
        partial = self.calls.setdefault(index, PartialToolCall())
        call_id = fragment.get("id")
        if isinstance(call_id, str) and call_id and not partial.id:
            partial.id = call_id
        function = fragment.get("function")
        if isinstance(function, dict):
            name, arguments = function.get("name"), function.get("arguments")
            if isinstance(name, str) and name and not partial.name:
                partial.name = name
            partial.arguments += arguments if isinstance(arguments, str) else ""

    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(
                id=partial.id or f"call_{uuid.uuid4().hex[:24]}",
                name=partial.name,
                arguments=partial.arguments,
            )
            for _, partial in sorted(self.calls.items())
        ]

    def stop_reason(self) -> ModelStopReason:
        called_tools = bool(self.calls)
        return stop_reason_of(self.finish_reason, STOP_REASONS, called_tools=called_tools)

    def usage(self, model: str) -> Usage:
        return priced_usage(
            model,
            input_tokens=self.input_tokens,
            cached_input_tokens=self.cached_input_tokens,
            output_tokens=self.output_tokens,
        )


def _objects(value: object) -> list[dict[str, object]]:
    """The JSON objects of a list field (a missing or malformed one has none)."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --------------------------------------------------------------------------- errors


def provider_message(exc: openai.APIStatusError) -> str:
    if isinstance(exc.body, dict) and isinstance(exc.body.get("message"), str):
        return str(exc.body["message"])
    return exc.message


# OpenAI says "context_length_exceeded"; llama.cpp's server "exceed_context_size_error".
OVERFLOW_CODES = ("context_length_exceeded", "exceed_context_size_error")


def context_overflow(exc: openai.APIStatusError, model: str) -> ContextOverflowError | None:
    """The overflow behind a 400, with the sizes from OpenAI's (or vLLM's) message."""
    body = exc.body if isinstance(exc.body, dict) else {}
    message = provider_message(exc)
    is_overflow = exc.code in OVERFLOW_CODES or body.get("type") in OVERFLOW_CODES
    if exc.status_code != 400 or not (is_overflow or "maximum context length" in message):
        return None
    limit = matched_number(r"maximum context length is (\d+)", message)
    prompt = matched_number(r"(\d+) in the messages", message) or matched_number(
        r"(?:resulted in|requested) (\d+) tokens", message
    )
    if isinstance(body.get("n_ctx"), int) and isinstance(body.get("n_prompt_tokens"), int):
        limit, prompt = body["n_ctx"], body["n_prompt_tokens"]
    return overflow_error("OpenAI", model, message, prompt, limit)


def api_failure(exc: Exception) -> Failure:
    """Whether an API error is worth another attempt."""
    if isinstance(exc, openai.APIStatusError):
        if context_overflow(exc, "") is not None:
            return Failure("context window exceeded", retryable=False)
        return status_failure(exc.status_code, exc.response.headers)
    # An error event inside a 200 stream; only server-side ones are worth a retry.
    body = exc.body if isinstance(exc, openai.APIError) else None
    server_side = isinstance(body, dict) and body.get("type") == "server_error"
    return Failure("server error mid-stream", retryable=server_side)


def api_error(exc: Exception, *, model: str, base_url: str, retries: int) -> ProviderError:
    """An API error as a message that tells the user what to do."""
    if not isinstance(exc, openai.APIStatusError):
        return unreadable_error("OpenAI", base_url, exc)
    overflow = context_overflow(exc, model)
    if overflow is not None:
        return overflow
    detail = provider_message(exc)
    status = exc.status_code
    return FAILURES.status_error(status, detail, model=model, base_url=base_url, retries=retries)


FAILURES = SdkFailures(
    vendor="OpenAI",
    key_env=API_KEY_ENV,
    unreachable_hint=f"{BASE_URL_ENV} if you use an OpenAI-compatible server",
    timeouts=(openai.APITimeoutError,),
    connection_errors=(openai.APIConnectionError,),
    stream_breaks=(openai.APIConnectionError,),
    api_errors=openai.APIError,
    api_failure=api_failure,
    api_error=api_error,
)


# --------------------------------------------------------------------------- provider


class OpenAIProvider(SdkProvider):
    """Chat Completions through `openai.AsyncOpenAI`, streamed."""

    failures = FAILURES
    _client: openai.AsyncOpenAI
    # How this server takes tools (probed on the first request with tools), and the
    # problem with them not yet told.
    _tools: ToolUse | None = None
    _untold: str | None = None

    def _connect(self, api_key: str, base_url: str | None, timeout_s: float) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
        )

    @property
    def _official(self) -> bool:
        """The official API wants max_completion_tokens (reasoning models reject max_tokens);
        compatible servers reliably understand only max_tokens."""
        return OFFICIAL_HOST in self._base_url

    async def _tool_use(self) -> ToolUse:
        """How this server is asked to use tools, probed once (GET /models tells
        llama-cpp-python's server apart); a problem is told the user once, in the Completed
        event of the first request with tools."""
        if self._tools is None:
            kind: ServerKind = "other"
            if not self._official and self._tool_choice in (None, "omit", "auto"):
                kind = await self._probe()
            self._tools = tool_use(self._tool_choice, kind)
            self._untold = self._tools.problem
            if self._untold:
                log.warning("%s: %s", self._base_url, self._untold)
        return self._tools

    async def _probe(self) -> ServerKind:
        """The server behind GET /models (the list the catalog checks names against); a
        list that cannot be read is a usual server's."""
        listing = await self.list_models()
        kind = server_kind(sorted(listing.owners)) if listing is not None else "other"
        log.info("the server at %s is %s", self._base_url, kind)
        return kind

    def _notice(self) -> str | None:
        told, self._untold = self._untold, None
        return told

    async def _attempt(self, request: ModelRequest) -> AsyncGenerator[StreamEvent, None]:
        tools = await self._tool_use() if request.tools else ToolUse(None, stream=True)
        body = self._body(request, tools)
        if not tools.stream:
            answer = await self._client.post(COMPLETIONS, body=body, cast_to=ChatCompletion)
            notice = self._notice() if request.tools else None
            async for event in whole_answer(answer, self.model, notice):
                yield event
            return
        state = StreamState()
        body |= {"stream": True, "stream_options": {"include_usage": True}}
        chunks = await self._client.post(
            COMPLETIONS,
            body=body,
            cast_to=ChatCompletion,
            stream=True,
            stream_cls=openai.AsyncStream[object],  # chunks as data: StreamState.add
        )
        async for chunk in until_broken(chunks, FAILURES):
            state.chunks += 1
            text = state.add(chunk)
            if text:
                yield TextDelta(text)
        if state.finish_reason is None:
            raise StreamInterrupted(EMPTY if state.chunks == 0 else ENDED_EARLY)
        for call in state.tool_calls():
            yield ToolCallReady(call)
        notice = self._notice() if request.tools else None
        yield Completed(
            stop_reason=state.stop_reason(), usage=state.usage(self.model), notice=notice
        )

    def _body(self, request: ModelRequest, tools: ToolUse) -> dict[str, object]:
        """The request as JSON-ready data. Posted as it is: the SDK's `create` would walk the
        whole history again to transform it (15 ms for 80 messages, growing with each step)."""
        body: dict[str, object] = {"model": self.model, "messages": wire_messages(request)}
        if request.tools:
            body["tools"] = [wire_tool(tool) for tool in request.tools]
            if tools.choice:
                body["tool_choice"] = tools.choice
        # Official servers take max_completion_tokens; the others know only the older name.
        body["max_completion_tokens" if self._official else "max_tokens"] = (
            request.max_output_tokens
        )
        return body


async def whole_answer(
    answer: ChatCompletion, model: str, notice: str | None
) -> AsyncGenerator[StreamEvent, None]:
    """A plain (unstreamed) answer as the events a stream would have given."""
    choice = answer.choices[0] if answer.choices else None
    message = choice.message if choice else None
    if message is not None and message.content:
        yield TextDelta(message.content)
    calls = [
        ToolCall(
            id=call.id or f"call_{uuid.uuid4().hex[:24]}",
            name=call.function.name,
            arguments=call.function.arguments or "",
        )
        for call in (message.tool_calls or [] if message else [])
        if isinstance(call, ChatCompletionMessageFunctionToolCall)
    ]
    for call in calls:
        yield ToolCallReady(call)
    reason = choice.finish_reason if choice else None
    usage = answer.usage
    yield Completed(
        stop_reason=stop_reason_of(reason, STOP_REASONS, called_tools=bool(calls)),
        usage=priced_usage(
            model,
            input_tokens=usage.prompt_tokens if usage else 0,
            cached_input_tokens=0,
            output_tokens=usage.completion_tokens if usage else 0,
        ),
        notice=notice,
    )
