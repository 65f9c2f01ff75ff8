"""One retry policy for model calls, shared by every provider.

Owns which failures are worth another attempt, how long to wait (exponential backoff with
full jitter, or the provider's Retry-After), and the loop that re-runs a streamed call.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from random import random as uniform

from cairn_server.providers.base import (
    ProviderError,
    Retrying,
    StreamEvent,
    TextDelta,
    ToolCallReady,
)

# Past this many doublings the delay is max_delay_s anyway; keeps 2**n small.
MAX_DOUBLINGS = 32


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a model call is retried.

    `sleep` and `random` are injectable so tests can record the requested delays instead
    of waiting them out.
    """

    max_retries: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 60.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    random: Callable[[], float] = uniform

    def delay_s(self, retry: int, retry_after_s: float | None = None) -> float:
        """The wait before retry number `retry` (1 for the first).

        A positive Retry-After from the provider wins, capped at max_retry_after_s;
        otherwise a uniform draw in [0, min(max_delay_s, base_delay_s * 2**(retry-1))].
        """
        if retry_after_s is not None and retry_after_s > 0:
            return min(retry_after_s, self.max_retry_after_s)
        doublings = min(max(retry - 1, 0), MAX_DOUBLINGS)
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0**doublings)
        return ceiling * min(max(self.random(), 0.0), 1.0)


@dataclass(frozen=True)
class Failure:
    """What went wrong with one attempt, and whether another attempt may go better."""

    reason: str
    retryable: bool
    retry_after_s: float | None = None


DROPPED = "connection dropped mid-stream"
ENDED_EARLY = "stream ended early"
# A 200 whose stream holds no event at all: llama-cpp-python's server answers so when it
# refuses a streamed request (a prompt over its window, tool_choice "auto"); the same
# request would be refused again, so it is not retried.
EMPTY = "empty answer (HTTP 200 without a single event)"


class StreamInterrupted(Exception):
    """The answer stopped before its final event; raised by a provider's attempt with
    DROPPED (the connection broke), ENDED_EARLY (the stream closed cleanly, unfinished) or
    EMPTY (it closed before its first event)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def interrupted(exc: StreamInterrupted) -> Failure:
    return Failure(exc.reason, retryable=exc.reason != EMPTY)


def timed_out() -> Failure:
    return Failure("timed out", retryable=True)


def connection_failed() -> Failure:
    return Failure("connection failed", retryable=True)


def is_retryable_status(status: int) -> bool:
    return status in (408, 409, 429) or status >= 500


def status_reason(status: int) -> str:
    if status == 429:
        return "rate limited (429)"
    if status == 529:
        return "overloaded (529)"
    if status == 408:
        return "request timed out (408)"
    if status == 409:
        return "conflict (409)"
    if status >= 500:
        return f"server error ({status})"
    return f"rejected ({status})"


def status_failure(status: int, headers: Mapping[str, str]) -> Failure:
    """An HTTP error answer; the provider's x-should-retry header, when sent, decides."""
    should_retry = headers.get("x-should-retry")
    retryable = is_retryable_status(status) if should_retry is None else should_retry == "true"
    return Failure(status_reason(status), retryable, retry_after_s(headers))


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the provider asked us to wait: retry-after-ms, else Retry-After given in
    seconds or as an HTTP date; None when absent or unreadable."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return float(milliseconds) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return moment.timestamp() - (time.time() if now is None else now)


def produces_output(event: StreamEvent) -> bool:
    return isinstance(event, TextDelta | ToolCallReady)


async def retrying(
    policy: RetryPolicy,
    attempt: Callable[[], AsyncGenerator[StreamEvent, None]],
    failure_of: Callable[[Exception], Failure | None],
    give_up: Callable[[Exception, int], ProviderError],
) -> AsyncIterator[StreamEvent]:
    """Run `attempt` until it completes, yielding its events; on a retryable failure
    yield Retrying, sleep, and start it again.

    `failure_of` classifies an exception (None: not a provider failure, re-raised as it
    is); `give_up(exc, retries)` is the error raised when a failure is final.
    """
    retries = 0
    while True:
        produced = False
        try:
            async with aclosing(attempt()) as events:
                async for event in events:
                    produced = produced or produces_output(event)
                    yield event
            return
        except Exception as exc:
            failure = failure_of(exc)
            if failure is None:
                raise
            if not failure.retryable or retries >= policy.max_retries:
                raise give_up(exc, retries) from exc
        retries += 1
        delay = policy.delay_s(retries, failure.retry_after_s)
        yield Retrying(
            attempt=retries, delay_s=delay, reason=failure.reason, discarded_output=produced
        )
        await policy.sleep(delay)
