"""What the two SDK-backed adapters share; each adapter keeps its own wire format.

Owns `SdkProvider` (the SDK client, the retried stream, closing), how an SDK's transport
failures are classified and worded (`SdkFailures`), and the stream reading they share.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any, ClassVar, Protocol, Self, TypedDict, TypeVar, Unpack

from cairn_server.config import ToolChoiceSetting
from cairn_server.domain import ModelRequest, ModelStopReason
from cairn_server.providers.base import (
    ProviderError,
    StreamEvent,
    empty_answer_error,
    interrupted_error,
    status_error,
    timeout_error,
    unreachable_error,
)
from cairn_server.providers.model_list import Listing, SharedListing
from cairn_server.providers.retry import (
    DROPPED,
    EMPTY,
    Failure,
    RetryPolicy,
    StreamInterrupted,
    connection_failed,
    interrupted,
    retrying,
    timed_out,
)

log = logging.getLogger(__name__)

# GET /models is asked before the first request: a server slower than this is not checked.
LIST_TIMEOUT_S = 5.0


class ApiErrorWording(Protocol):
    """An API error (an error answer or event, not a transport failure) in the user's words."""

    def __call__(
        self, exc: Exception, *, model: str, base_url: str, retries: int
    ) -> ProviderError: ...


@dataclass(frozen=True)
class SdkFailures:
    """How one SDK's exceptions are classified for retrying and worded when final.

    The transport failures (timeouts, refused or broken connections) are handled here the
    same way for every SDK; `api_failure` and `api_error` judge and word the rest, any
    instance of `api_errors`. `stream_breaks` is what the SDK raises when a connection
    breaks mid-stream; `unreachable_hint` completes "Check the network, or …".
    """

    vendor: str
    key_env: str
    unreachable_hint: str
    timeouts: tuple[type[Exception], ...]
    connection_errors: tuple[type[Exception], ...]
    stream_breaks: tuple[type[Exception], ...]
    api_errors: type[Exception]
    api_failure: Callable[[Exception], Failure]
    api_error: ApiErrorWording

    def failure_of(self, exc: Exception) -> Failure | None:
        """Whether an attempt's exception is worth another attempt (None: not an API failure)."""
        if isinstance(exc, StreamInterrupted):
            return interrupted(exc)
        if isinstance(exc, self.timeouts):
            return timed_out()
        if isinstance(exc, self.connection_errors):
            return connection_failed()
        if isinstance(exc, self.api_errors):
            return self.api_failure(exc)
        return None

    def final_error(
        self, exc: Exception, *, model: str, base_url: str, retries: int
    ) -> ProviderError:
        """An attempt's final failure as a message that tells the user what to do."""
        if isinstance(exc, StreamInterrupted):
            if exc.reason == EMPTY:
                return empty_answer_error(self.vendor, base_url)
            return interrupted_error(self.vendor, base_url, retries)
        if isinstance(exc, self.timeouts):
            return timeout_error(self.vendor, base_url, retries)
        if isinstance(exc, self.connection_errors):
            hint = self.unreachable_hint
            return unreachable_error(self.vendor, base_url, exc.__cause__, hint, retries)
        return self.api_error(exc, model=model, base_url=base_url, retries=retries)

    def status_error(
        self, status: int, detail: str, *, model: str, base_url: str, retries: int
    ) -> ProviderError:
        return status_error(
            self.vendor,
            status,
            detail,
            model=model,
            base_url=base_url,
            key_env=self.key_env,
            retries=retries,
        )


class SdkClient(Protocol):
    """The part of an SDK's async client every adapter uses."""

    @property
    def base_url(self) -> object: ...

    async def close(self) -> None: ...


class ClientOptions(TypedDict, total=False):
    """How the SDK client is built: `retry` owns every retry, `timeout_s` bounds a call."""

    retry: RetryPolicy | None
    timeout_s: float
    tool_choice: ToolChoiceSetting | None
    listing: SharedListing


class SdkProvider(ABC):
    """A Provider over an official SDK client whose own retries are off, so a stream that
    breaks midway is retried by `retry` the same way as a failed request."""

    failures: ClassVar[SdkFailures]

    def __init__(
        self,
        model: str,
        api_key: str,
        base_url: str | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        self.model = model
        self._client: Any = self._connect(api_key, base_url, options.get("timeout_s", 600.0))
        self._base_url = str(self._client.base_url).rstrip("/")
        self._retry = options.get("retry") or RetryPolicy()
        self._tool_choice = options.get("tool_choice")
        # Shared by the catalog with every provider of the same server: fetched once.
        self._listing = options.get("listing") or SharedListing()

    @abstractmethod
    def _connect(self, api_key: str, base_url: str | None, timeout_s: float) -> SdkClient:
        """The SDK's async client, built with max_retries=0."""

    @abstractmethod
    def _attempt(self, request: ModelRequest) -> AsyncGenerator[StreamEvent, None]:
        """One streamed call, raising what `_failure_of` classifies."""

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        attempt = partial(self._attempt, request)
        return retrying(self._retry, attempt, self.failures.failure_of, self._give_up)

    def _give_up(self, exc: Exception, retries: int) -> ProviderError:
        base_url = self._base_url
        return self.failures.final_error(exc, model=self.model, base_url=base_url, retries=retries)

    async def list_models(self) -> Listing | None:
        """The server's GET /models (fetched once, shared); None when it cannot be read."""
        return await self._listing.get(self._fetch_listing)

    async def _fetch_listing(self) -> Listing | None:
        listed = self._client.with_options(timeout=LIST_TIMEOUT_S).models.list()
        try:
            models = [model async for model in listed]
        except (self.failures.api_errors, ValueError, TypeError) as exc:
            log.info("GET %s/models failed (%s); its models are not checked", self._base_url, exc)
            if getattr(exc, "status_code", None) == 401:  # a bad key; other refusals say little
                final = self.failures.final_error(
                    exc, model=self.model, base_url=self._base_url, retries=0
                )
                return Listing(self.failures.vendor, self._base_url, refused_key=str(final))
            return None
        ids = tuple(str(getattr(model, "id", "")) for model in models)
        owners = frozenset(str(getattr(model, "owned_by", "")) for model in models)
        listed = tuple(name for name in ids if name)
        return Listing(self.failures.vendor, self._base_url, ids=listed, owners=owners)

    async def aclose(self) -> None:
        """Close the SDK client's connections; call when the provider is no longer used."""
        await self._client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


Item = TypeVar("Item", covariant=True)


class SdkStream(Protocol[Item]):
    """An SDK's streamed answer: closed with `async with`, read with `async for`."""

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> object: ...

    def __aiter__(self) -> AsyncIterator[Item]: ...


async def until_broken(
    stream: SdkStream[Item], failures: SdkFailures
) -> AsyncGenerator[Item, None]:
    """The stream's items; a connection that breaks mid-stream raises StreamInterrupted."""
    async with stream:
        try:
            async for item in stream:
                yield item
        except failures.stream_breaks as exc:
            if isinstance(exc, failures.timeouts):
                raise
            raise StreamInterrupted(DROPPED) from exc


def stop_reason_of(
    wire_reason: str | None, reasons: Mapping[str, ModelStopReason], *, called_tools: bool
) -> ModelStopReason:
    """The vendor's stop reason in our words; a stream that never said one ended its turn
    (or its tool calls)."""
    if wire_reason is None:
        return "tool_use" if called_tools else "end_turn"
    return reasons.get(wire_reason, "other")
