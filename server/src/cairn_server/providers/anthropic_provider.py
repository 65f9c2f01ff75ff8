"""Anthropic's Messages API behind the Provider interface.

Owns the translation between the provider-neutral messages/events and the Messages wire
format, through the official `anthropic` SDK, streamed, with prompt-cache breakpoints.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Unpack

import anthropic
import httpx2
from anthropic.types import (
    AssistantMessageParam,
    InputJSONDelta,
    Message,
    MessageParam,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    RedactedThinkingBlock,
    RedactedThinkingBlockParam,
    SignatureDelta,
    TextBlock,
    TextBlockParam,
    ThinkingBlock,
    ThinkingBlockParam,
    ThinkingDelta,
    ToolParam,
    ToolResultBlockParam,
    ToolUseBlock,
    ToolUseBlockParam,
    UserMessageParam,
)
from anthropic.types import TextDelta as AnthropicTextDelta
from cairn_protocol import Usage

from cairn_server.domain import ModelMessage, ModelRequest, ModelStopReason, ToolCall, ToolSpec
from cairn_server.providers.base import (
    Completed,
    ContextOverflowError,
    ProviderError,
    StreamEvent,
    TextDelta,
    ToolCallReady,
    matched_numbers,
    overflow_error,
    retries_note,
    unreadable_error,
)
from cairn_server.providers.pricing import priced_usage
from cairn_server.providers.retry import ENDED_EARLY, Failure, StreamInterrupted, status_failure
from cairn_server.providers.sdk import (
    ClientOptions,
    SdkFailures,
    SdkProvider,
    stop_reason_of,
    until_broken,
)

API_KEY_ENV = "ANTHROPIC_API_KEY"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"
MESSAGES = "/v1/messages"

STOP_REASONS: dict[str, ModelStopReason] = {
    "end_turn": "end_turn",
    "stop_sequence": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "model_context_window_exceeded": "max_tokens",
}

WireBlock = (
    TextBlockParam
    | ToolUseBlockParam
    | ToolResultBlockParam
    | ThinkingBlockParam
    | RedactedThinkingBlockParam
)
WireRole = Literal["user", "assistant"]


# --------------------------------------------------------------------------- thinking memory


class ThinkingMemory:
    """Assistant turns that held thinking blocks, exactly as Claude sent them, by tool_use id.

    Models that think must get a tool-calling turn back verbatim (thinking blocks, their
    signatures, their order) or the next request fails. The provider-neutral ModelMessage
    has no place for thinking, so such turns are kept here, in memory, for the process.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._turns: OrderedDict[str, tuple[WireBlock, ...]] = OrderedDict()
        self._capacity = capacity

    def remember(self, tool_use_ids: Sequence[str], blocks: Sequence[WireBlock]) -> None:
        for tool_use_id in tool_use_ids:
            self._turns[tool_use_id] = tuple(blocks)
            self._turns.move_to_end(tool_use_id)
        while len(self._turns) > self._capacity:
            self._turns.popitem(last=False)

    def recall(self, tool_calls: Sequence[ToolCall]) -> list[WireBlock] | None:
        """The remembered turn holding exactly these tool calls, if there is one."""
        if not tool_calls or tool_calls[0].id not in self._turns:
            return None
        blocks = self._turns[tool_calls[0].id]
        remembered_ids = [block["id"] for block in blocks if block["type"] == "tool_use"]
        if remembered_ids != [call.id for call in tool_calls]:
            return None
        return [dict(block) for block in blocks]  # type: ignore[misc]


SHARED_THINKING_MEMORY = ThinkingMemory()


# --------------------------------------------------------------------------- request


def assistant_blocks(message: ModelMessage, memory: ThinkingMemory) -> list[WireBlock]:
    remembered = memory.recall(message.tool_calls)
    if remembered is not None:
        return remembered
    blocks: list[WireBlock] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": call.arguments_object,
            }
        )
    return blocks


def user_side_blocks(message: ModelMessage) -> list[WireBlock]:
    if message.role == "tool":
        result: ToolResultBlockParam = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id or "",
            "content": message.content,
            "is_error": message.is_error,
        }
        return [result]
    return [{"type": "text", "text": message.content}] if message.content else []


def tool_results_first(blocks: list[WireBlock]) -> list[WireBlock]:
    """The API wants tool_result blocks before any text in a user message."""
    return sorted(blocks, key=lambda block: block["type"] != "tool_result")


def mark_cache_breakpoint(block: WireBlock) -> None:
    if block["type"] in ("text", "tool_use", "tool_result"):
        block["cache_control"] = {"type": "ephemeral"}


def wire_messages(messages: Sequence[ModelMessage], memory: ThinkingMemory) -> list[MessageParam]:
    """Alternating user/assistant messages; tool results merge into the following user turn."""
    turns: list[tuple[WireRole, list[WireBlock]]] = []
    for message in messages:
        role: WireRole = "assistant" if message.role == "assistant" else "user"
        if role == "assistant":
            blocks = assistant_blocks(message, memory)
        else:
            blocks = user_side_blocks(message)
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    turns = [
        (role, tool_results_first(blocks) if role == "user" else blocks) for role, blocks in turns
    ]
    if turns:
        # Everything up to the newest block is cached for the next call of this conversation.
        mark_cache_breakpoint(turns[-1][1][-1])
    return [wire_message(role, blocks) for role, blocks in turns]


def wire_message(role: WireRole, blocks: list[WireBlock]) -> MessageParam:
    if role == "user":
        return UserMessageParam(role="user", content=blocks)
    return AssistantMessageParam(role="assistant", content=blocks)


def wire_system(system: str) -> list[TextBlockParam]:
    if not system:
        return []
    return [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]


def wire_tool(tool: ToolSpec) -> ToolParam:
    return {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}


# --------------------------------------------------------------------------- response


@dataclass
class PartialToolUse:
    id: str
    name: str
    initial_input: dict[str, object]
    json_text: str = ""

    def finished(self) -> ToolCall:
        arguments = self.json_text or json.dumps(self.initial_input)
        return ToolCall(id=self.id, name=self.name, arguments=arguments)


@dataclass
class StreamState:
    """What the events have said so far, block by block, in the order Claude sent them."""

    blocks: dict[int, WireBlock] = field(default_factory=dict)
    tool_uses: dict[int, PartialToolUse] = field(default_factory=dict)
    finished_calls: list[ToolCall] = field(default_factory=list)
    saw_thinking: bool = False
    finished: bool = False  # message_stop arrived: the answer is whole
    stop_reason_text: str | None = None
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0

    def add(self, event: RawMessageStreamEvent) -> StreamEvent | None:
        """Take in one event; return what it means for the caller, if anything yet."""
        if isinstance(event, RawMessageStartEvent):
            usage = event.message.usage
            self.input_tokens = usage.input_tokens
            self.cache_read_tokens = usage.cache_read_input_tokens or 0
            self.cache_write_tokens = usage.cache_creation_input_tokens or 0
            self.output_tokens = usage.output_tokens
        elif isinstance(event, RawMessageDeltaEvent):
            self.take_final_usage(event)
        elif isinstance(event, RawContentBlockStartEvent):
            return self.start_block(event)
        elif isinstance(event, RawContentBlockDeltaEvent):
            return self.add_delta(event)
        elif isinstance(event, RawContentBlockStopEvent) and event.index in self.tool_uses:
            return self.finish_tool_use(event.index)
        elif isinstance(event, RawMessageStopEvent):
            self.finished = True
        return None

    def take_final_usage(self, event: RawMessageDeltaEvent) -> None:
        self.stop_reason_text = event.delta.stop_reason or self.stop_reason_text
        usage = event.usage
        self.output_tokens = usage.output_tokens
        if usage.input_tokens is not None:
            self.input_tokens = usage.input_tokens
        if usage.cache_read_input_tokens is not None:
            self.cache_read_tokens = usage.cache_read_input_tokens
        if usage.cache_creation_input_tokens is not None:
            self.cache_write_tokens = usage.cache_creation_input_tokens

    def start_block(self, event: RawContentBlockStartEvent) -> StreamEvent | None:
        block, index = event.content_block, event.index
        if isinstance(block, TextBlock):
            self.blocks[index] = {"type": "text", "text": block.text}
            return TextDelta(block.text) if block.text else None
        if isinstance(block, ToolUseBlock):
            self.tool_uses[index] = PartialToolUse(block.id, block.name, dict(block.input))
        elif isinstance(block, ThinkingBlock):
            self.saw_thinking = True
            self.blocks[index] = {
                "type": "thinking",
                "thinking": block.thinking,
                "signature": block.signature,
            }
        elif isinstance(block, RedactedThinkingBlock):
            self.saw_thinking = True
            self.blocks[index] = {"type": "redacted_thinking", "data": block.data}
        return None

    def add_delta(self, event: RawContentBlockDeltaEvent) -> StreamEvent | None:
        delta, block = event.delta, self.blocks.get(event.index)
        if isinstance(delta, InputJSONDelta) and event.index in self.tool_uses:
            self.tool_uses[event.index].json_text += delta.partial_json
        elif block is None:
            return None
        elif isinstance(delta, AnthropicTextDelta) and block["type"] == "text":
            block["text"] += delta.text
            return TextDelta(delta.text) if delta.text else None
        elif isinstance(delta, ThinkingDelta) and block["type"] == "thinking":
            block["thinking"] += delta.thinking
        elif isinstance(delta, SignatureDelta) and block["type"] == "thinking":
            block["signature"] = delta.signature
        return None

    def finish_tool_use(self, index: int) -> ToolCallReady:
        call = self.tool_uses.pop(index).finished()
        self.finished_calls.append(call)
        self.blocks[index] = {
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            "input": call.arguments_object,
        }
        return ToolCallReady(call)

    def content_blocks(self) -> list[WireBlock]:
        """The assistant turn as it would go back to the API (empty text blocks dropped)."""
        ordered = [block for _, block in sorted(self.blocks.items())]
        return [block for block in ordered if block["type"] != "text" or block["text"]]

    def stop_reason(self) -> ModelStopReason:
        called_tools = bool(self.finished_calls)
        return stop_reason_of(self.stop_reason_text, STOP_REASONS, called_tools=called_tools)

    def usage(self, model: str) -> Usage:
        """input_tokens counts every prompt token: uncached, written to and read from cache."""
        return priced_usage(
            model,
            input_tokens=self.input_tokens + self.cache_read_tokens + self.cache_write_tokens,
            cached_input_tokens=self.cache_read_tokens,
            output_tokens=self.output_tokens,
        )


# --------------------------------------------------------------------------- errors


# Error types an event inside a 200 stream can carry that are worth another attempt.
RETRYABLE_STREAM_ERRORS = {
    "overloaded_error": "overloaded mid-stream",
    "api_error": "server error mid-stream",
    "rate_limit_error": "rate limited mid-stream",
}


def context_overflow(exc: anthropic.APIStatusError, model: str) -> ContextOverflowError | None:
    """The overflow behind a 400 ("prompt is too long: N tokens > M maximum")."""
    detail = exc.api_message or exc.message
    if exc.status_code != 400:
        return None
    too_long = matched_numbers(r"prompt is too long: (\d+) tokens > (\d+)", detail)
    if too_long is not None:
        return overflow_error("Anthropic", model, detail, *too_long)
    with_output = matched_numbers(r"exceed context limit: (\d+) \+ \d+ > (\d+)", detail)
    if with_output is not None or "prompt is too long" in detail:
        prompt, limit = with_output or (None, None)
        return overflow_error("Anthropic", model, detail, prompt, limit)
    return None


def api_failure(exc: Exception) -> Failure:
    """Whether an API error is worth another attempt."""
    if not isinstance(exc, anthropic.APIStatusError):
        return Failure("unreadable answer", retryable=False)
    if exc.status_code < 400:  # an error event inside the stream
        reason = RETRYABLE_STREAM_ERRORS.get(str(exc.type))
        return Failure(reason or f"{exc.type} mid-stream", retryable=reason is not None)
    if context_overflow(exc, "") is not None:
        return Failure("context window exceeded", retryable=False)
    return status_failure(exc.status_code, exc.response.headers)


def api_error(exc: Exception, *, model: str, base_url: str, retries: int) -> ProviderError:
    """An API error as a message that tells the user what to do."""
    if not isinstance(exc, anthropic.APIStatusError):
        return unreadable_error("Anthropic", base_url, exc)
    status, detail = exc.status_code, exc.api_message or exc.message
    if status < 400:
        tried = f" ({retries_note(retries)})" if retries else ""
        return ProviderError(f"Anthropic reported an error while answering{tried}: {detail}")
    overflow = context_overflow(exc, model)
    if overflow is not None:
        return overflow
    return FAILURES.status_error(status, detail, model=model, base_url=base_url, retries=retries)


FAILURES = SdkFailures(
    vendor="Anthropic",
    key_env=API_KEY_ENV,
    unreachable_hint=f"{BASE_URL_ENV} if you use a proxy",
    timeouts=(anthropic.APITimeoutError, httpx2.TimeoutException),
    connection_errors=(anthropic.APIConnectionError,),
    # The SDK does not wrap failures that happen mid-stream.
    stream_breaks=(httpx2.TransportError,),
    api_errors=anthropic.APIError,
    api_failure=api_failure,
    api_error=api_error,
)


# --------------------------------------------------------------------------- provider


class AnthropicProvider(SdkProvider):
    """The Messages API through `anthropic.AsyncAnthropic`, streamed."""

    failures = FAILURES
    _client: anthropic.AsyncAnthropic

    def __init__(
        self,
        model: str,
        api_key: str,
        base_url: str | None = None,
        *,
        thinking_memory: ThinkingMemory = SHARED_THINKING_MEMORY,
        **options: Unpack[ClientOptions],
    ) -> None:
        super().__init__(model, api_key, base_url, **options)
        self._thinking = thinking_memory

    def _connect(
        self, api_key: str, base_url: str | None, timeout_s: float
    ) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
        )

    def _body(self, request: ModelRequest) -> dict[str, object]:
        """The request as JSON-ready data. Posted as it is: the SDK's `create` would walk the
        whole history again to transform it (milliseconds per step, growing with the history)."""
        body: dict[str, object] = {
            "model": self.model,
            "max_tokens": request.max_output_tokens,
            "messages": wire_messages(request.messages, self._thinking),
            "stream": True,
        }
        system = wire_system(request.system)
        if system:
            body["system"] = system
        if request.tools:
            body["tools"] = [wire_tool(tool) for tool in request.tools]
        return body

    async def _attempt(self, request: ModelRequest) -> AsyncGenerator[StreamEvent, None]:
        state = StreamState()
        events = await self._client.post(
            MESSAGES,
            body=self._body(request),
            cast_to=Message,
            stream=True,
            stream_cls=anthropic.AsyncStream[RawMessageStreamEvent],
        )
        async for event in until_broken(events, FAILURES):
            meaning = state.add(event)
            if meaning is not None:
                yield meaning
        if not state.finished:
            raise StreamInterrupted(ENDED_EARLY)
        if state.finished_calls and state.saw_thinking:
            call_ids = [call.id for call in state.finished_calls]
            self._thinking.remember(call_ids, state.content_blocks())
        yield Completed(stop_reason=state.stop_reason(), usage=state.usage(self.model))
