"""The model interface every provider adapter implements: stream events and errors.

Owns `Provider`, what its stream yields, and the wording of provider failures; the
messages and requests it translates live in cairn_server.domain.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from cairn_protocol import Usage

from cairn_server.domain import ModelRequest, ModelStopReason, ToolCall
from cairn_server.errors import CairnServerError
from cairn_server.providers.model_list import Listing


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallReady:
    """A tool call whose arguments have fully arrived."""

    call: ToolCall


@dataclass(frozen=True)
class Completed:
    """The last event of a stream; `notice` is what the user must hear once about this
    server (tools it cannot use), on the first answer that shows it."""

    stop_reason: ModelStopReason
    usage: Usage
    notice: str | None = None


@dataclass(frozen=True)
class Retrying:
    """The attempt failed and the provider will try again after `delay_s`.

    `attempt` numbers the retry about to be made (1 for the first). When
    `discarded_output` is True this attempt had already yielded TextDelta/ToolCallReady
    events: the consumer must drop them, the retry starts the answer again. `reason` is
    short and human ("rate limited (429)", "connection dropped mid-stream").
    """

    attempt: int
    delay_s: float
    reason: str
    discarded_output: bool


StreamEvent = TextDelta | ToolCallReady | Completed | Retrying


class ProviderError(CairnServerError, RuntimeError):
    """The model could not be reached or answered with an error; message is for the user."""


class ContextOverflowError(ProviderError):
    """The request is longer than the model's context window; never retried as it is.

    `prompt_tokens` and `limit` are parsed from the provider's message when it gives them.
    """

    def __init__(
        self, message: str, *, prompt_tokens: int | None = None, limit: int | None = None
    ) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.limit = limit


def matched_numbers(pattern: str, text: str) -> tuple[int, ...] | None:
    """The numbers `pattern`'s groups caught in `text` (a provider's error message)."""
    match = re.search(pattern, text)
    return tuple(int(group) for group in match.groups()) if match else None


def matched_number(pattern: str, text: str) -> int | None:
    numbers = matched_numbers(pattern, text)
    return numbers[0] if numbers else None


def overflow_error(
    vendor: str, model: str, detail: str, prompt_tokens: int | None, limit: int | None
) -> ContextOverflowError:
    sizes = f" ({prompt_tokens} tokens > {limit})" if prompt_tokens and limit else ""
    return ContextOverflowError(
        f"The conversation is too long for {model}{sizes}: {vendor} said: {detail}",
        prompt_tokens=prompt_tokens,
        limit=limit,
    )


class EmptyAnswerError(ProviderError):
    """The server answered 200 with an empty stream: a refusal it did not explain. The run
    takes it for a context overflow when the request was big enough for one."""


def empty_answer_error(vendor: str, base_url: str) -> EmptyAnswerError:
    return EmptyAnswerError(
        f"{vendor} at {base_url} answered with an empty stream (HTTP 200 without a single "
        "event). llama-cpp-python's server does this when it refuses a request: a prompt "
        'longer than its context window (its --n_ctx), or tool_choice "auto" while streaming '
        "(see CAIRN_MODEL_TOOL_CHOICE)."
    )


def retries_note(retries: int) -> str:
    return f"after {retries} {'retry' if retries == 1 else 'retries'}"


def timeout_error(vendor: str, base_url: str, retries: int) -> ProviderError:
    return ProviderError(
        f"{vendor} at {base_url} did not answer in time ({retries_note(retries)})."
    )


def unreachable_error(
    vendor: str, base_url: str, cause: object, hint: str, retries: int = 0
) -> ProviderError:
    detail = f" ({cause})" if cause else ""
    tried = f" ({retries_note(retries)})" if retries else ""
    return ProviderError(
        f"Cannot reach {vendor} at {base_url}{detail}{tried}. Check the network, or {hint}."
    )


def interrupted_error(vendor: str, base_url: str, retries: int) -> ProviderError:
    return ProviderError(
        f"{vendor} at {base_url} stopped answering mid-stream ({retries_note(retries)})."
    )


def unreadable_error(vendor: str, base_url: str, exc: Exception) -> ProviderError:
    return ProviderError(f"{vendor} at {base_url} sent a response Cairn could not read: {exc}")


def status_error(
    vendor: str, status: int, detail: str, *, model: str, base_url: str, key_env: str, retries: int
) -> ProviderError:
    """An HTTP error from a model API, worded with what the user can do about it."""
    if status == 401:
        return ProviderError(f"{vendor} refused the API key (401): {detail}. Check {key_env}.")
    if status == 403:
        return ProviderError(f"{vendor} denied access (403): {detail}. Check {key_env}.")
    if status == 404:
        return ProviderError(
            f"Model {model!r} was not found at {base_url} (404): {detail}. Check CAIRN_MODEL."
        )
    if status in (408, 409, 429) or status >= 500:
        return ProviderError(f"{vendor} answered {status} {retries_note(retries)}: {detail}")
    return ProviderError(f"{vendor} rejected the request ({status}): {detail}")


class Provider(Protocol):
    """A model behind an SDK. `stream` yields deltas, finished tool calls, then Completed.

    A failed attempt that will be retried yields Retrying (drop the attempt's output when
    it says so) and starts over; giving up raises ProviderError, or ContextOverflowError
    when the request does not fit the model's context window.
    """

    model: str

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]: ...

    async def list_models(self) -> Listing | None:
        """The models its server lists (GET /models), or None when that cannot be read."""

    async def aclose(self) -> None:
        """Release the SDK client's connections."""
