"""Retries, backoff and context overflow in both providers, through the real SDKs and the
fake model server on loopback.

The retry policy owns every retry (the SDKs' own are off): rate limits, server errors,
timeouts and dropped streams are retried with the provider's Retry-After or jittered
backoff, announced by a Retrying event; other errors and context overflow are not. Delays
are recorded by an injected sleep, never waited out.
"""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from cairn_fakes.runner import FakeModelServer
from cairn_fakes.script import Script, ScriptedError, Turn
from cairn_server.config import RETRIES_ENV, RETRY_BASE_DELAY_ENV, ModelSettings, SettingsError
from cairn_server.domain import ModelMessage, ModelRequest
from cairn_server.providers.base import (
    Completed,
    ContextOverflowError,
    Provider,
    ProviderError,
    Retrying,
    StreamEvent,
    TextDelta,
)
from cairn_server.providers.catalog import make_provider, retry_policy
from cairn_server.providers.openai_provider import OpenAIProvider
from cairn_server.providers.retry import RetryPolicy, retry_after_s, status_failure
from support.providers import adapters_for

pytestmark = pytest.mark.filterwarnings("error")


class Sleeps:
    """An injected sleep that records the delays asked for and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def policy(sleeps: Sleeps, *, max_retries: int = 4, **options: Any) -> RetryPolicy:
    options.setdefault("random", lambda: 1.0)
    return RetryPolicy(max_retries=max_retries, sleep=sleeps, **options)


@pytest.fixture(params=["openai", "anthropic"])
def provider_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


ProviderFactory = Callable[..., Provider]


@pytest.fixture
async def open_provider(
    fake: FakeModelServer, provider_name: str
) -> AsyncIterator[ProviderFactory]:
    """Providers of the parametrized kind for the fake, closed after the test."""
    async with adapters_for(fake) as make:
        yield lambda **options: make(provider_name, **options)


@pytest.fixture
def windowed(fake: FakeModelServer) -> Iterator[FakeModelServer]:
    """The fake with a 200-token context window, unlimited again afterwards."""
    fake.context_window = 200
    yield fake
    fake.context_window = None


def ask(text: str = "hi") -> ModelRequest:
    return ModelRequest(system="You are Cairn.", messages=[ModelMessage(role="user", content=text)])


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


def retries_of(events: list[StreamEvent]) -> list[Retrying]:
    return [event for event in events if isinstance(event, Retrying)]


def final_text(events: list[StreamEvent]) -> str:
    """The text of the last attempt: deltas after the last Retrying event."""
    last_retry = max((i for i, e in enumerate(events) if isinstance(e, Retrying)), default=-1)
    return "".join(e.text for e in events[last_retry + 1 :] if isinstance(e, TextDelta))


async def events_until_error(
    stream: AsyncIterator[StreamEvent],
) -> tuple[list[StreamEvent], ProviderError]:
    events: list[StreamEvent] = []
    with pytest.raises(ProviderError) as raised:
        async for event in stream:
            events.append(event)
    return events, raised.value


# --------------------------------------------------------------------------- retried


async def test_rate_limit_waits_as_long_as_retry_after_asks(
    fake: FakeModelServer, open_provider: ProviderFactory
) -> None:
    limited = ScriptedError(status=429, message="slow down", retry_after_s=7)
    fake.set_script(Script([Turn(error=limited), Turn(text="ok")]))
    sleeps = Sleeps()

    events = await collect(open_provider(retry=policy(sleeps)).stream(ask()))

    assert retries_of(events) == [
        Retrying(attempt=1, delay_s=7.0, reason="rate limited (429)", discarded_output=False)
    ]
    assert sleeps.delays == [7.0]
    assert final_text(events) == "ok" and isinstance(events[-1], Completed)
    assert len(fake.requests) == 2


async def test_retry_after_is_capped_and_retry_after_ms_is_honoured(
    fake: FakeModelServer, open_provider: ProviderFactory
) -> None:
    fake.set_script(
        Script(
            [
                Turn(error=ScriptedError(status=429, retry_after_s=3600)),
                Turn(error=ScriptedError(status=429, retry_after_ms=250)),
                Turn(text="ok"),
            ]
        )
    )
    sleeps = Sleeps()

    events = await collect(open_provider(retry=policy(sleeps, max_retry_after_s=60)).stream(ask()))

    assert sleeps.delays == [60.0, 0.25]
    assert final_text(events) == "ok"


@pytest.mark.parametrize(
    ("status", "reason"),
    [(500, "server error (500)"), (503, "server error (503)"), (529, "overloaded (529)")],
)
async def test_server_errors_are_retried_then_the_answer_arrives(
    fake: FakeModelServer, open_provider: ProviderFactory, status: int, reason: str
) -> None:
    failing = ScriptedError(status=status, message="try later")
    fake.set_script(Script([Turn(error=failing), Turn(error=failing), Turn(text="recovered")]))
    sleeps = Sleeps()

    events = await collect(open_provider(retry=policy(sleeps)).stream(ask()))

    assert [(r.attempt, r.reason) for r in retries_of(events)] == [(1, reason), (2, reason)]
    assert final_text(events) == "recovered"
    assert len(fake.requests) == 3  # the SDK itself retried nothing


async def test_a_timeout_is_retried(fake: FakeModelServer, open_provider: ProviderFactory) -> None:
    fake.set_script(Script([Turn(text="too late", delay_s=2.0), Turn(text="in time")]))
    sleeps = Sleeps()

    events = await collect(open_provider(retry=policy(sleeps), timeout_s=0.3).stream(ask()))

    [retry] = retries_of(events)
    assert (retry.reason, retry.discarded_output) == ("timed out", False)
    assert final_text(events) == "in time"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("drop_stream", "connection dropped mid-stream"), ("end_stream_early", "stream ended early")],
)
async def test_a_broken_stream_is_retried_and_its_partial_output_discarded(
    fake: FakeModelServer, open_provider: ProviderFactory, fault: Any, reason: str
) -> None:
    dropped = Turn(text="A first answer that never finishes.", chunk_size=5, fault=fault)
    fake.set_script(Script([dropped, Turn(text="The whole second answer.")]))
    sleeps = Sleeps()

    events = await collect(open_provider(retry=policy(sleeps)).stream(ask()))

    [retry] = retries_of(events)
    before = events[: events.index(retry)]
    partial = "".join(e.text for e in before if isinstance(e, TextDelta))
    assert partial and dropped.text.startswith(partial) and partial != dropped.text
    assert not any(isinstance(e, Completed) for e in before)
    assert retry == Retrying(attempt=1, delay_s=0.5, reason=reason, discarded_output=True)
    assert final_text(events) == "The whole second answer."
    assert isinstance(events[-1], Completed) and events[-1].stop_reason == "end_turn"


# --------------------------------------------------------------------------- given up


async def test_gives_up_after_max_retries_and_says_how_many(
    fake: FakeModelServer, open_provider: ProviderFactory
) -> None:
    busy = ScriptedError(status=503, message="still busy")
    fake.set_script(Script([Turn(error=busy)] * 3 + [Turn(text="never reached")]))
    sleeps = Sleeps()

    events, error = await events_until_error(
        open_provider(retry=policy(sleeps, max_retries=2)).stream(ask())
    )

    assert [r.attempt for r in retries_of(events)] == [1, 2]
    assert "answered 503 after 2 retries" in str(error) and "still busy" in str(error)
    assert len(fake.requests) == 3 and len(sleeps.delays) == 2


@pytest.mark.parametrize(
    ("turn", "options", "expected"),
    [
        (Turn(text="cut", fault="drop_stream"), {}, "stopped answering mid-stream (after 1 retry)"),
        (Turn(text="late", delay_s=2.0), {"timeout_s": 0.3}, "did not answer in time (after 1"),
    ],
    ids=["dropped", "timed-out"],
)
async def test_network_failures_give_up_with_the_retry_count(
    fake: FakeModelServer,
    open_provider: ProviderFactory,
    turn: Turn,
    options: dict[str, Any],
    expected: str,
) -> None:
    fake.set_script(Script([turn, turn]))
    provider = open_provider(retry=policy(Sleeps(), max_retries=1), **options)

    _events, error = await events_until_error(provider.stream(ask()))

    assert expected in str(error)


@pytest.mark.parametrize(("status", "hint"), [(400, "rejected the request (400)"), (401, "KEY")])
async def test_client_errors_are_not_retried(
    fake: FakeModelServer, open_provider: ProviderFactory, status: int, hint: str
) -> None:
    fake.set_script(Script([Turn(error=ScriptedError(status=status)), Turn(text="unused")]))
    sleeps = Sleeps()

    events, error = await events_until_error(open_provider(retry=policy(sleeps)).stream(ask()))

    assert hint in str(error) and not isinstance(error, ContextOverflowError)
    assert events == [] and sleeps.delays == [] and len(fake.requests) == 1


# --------------------------------------------------------------------------- context overflow


async def test_an_overflowing_prompt_raises_context_overflow_with_the_sizes(
    windowed: FakeModelServer, open_provider: ProviderFactory
) -> None:
    windowed.set_script(Script.of_texts("never sent"))
    sleeps = Sleeps()

    _events, error = await events_until_error(
        open_provider(retry=policy(sleeps)).stream(ask("tell me everything " * 100))
    )

    assert isinstance(error, ContextOverflowError)
    assert error.limit == 200
    assert error.prompt_tokens is not None and error.prompt_tokens > 200
    assert f"{error.prompt_tokens} tokens > 200" in str(error)
    assert sleeps.delays == [] and windowed.script.consumed == 0


@pytest.mark.parametrize(
    ("provider_name", "message", "sizes"),
    [
        (
            "openai",
            "This model's maximum context length is 4096 tokens. However, you requested 5000 "
            "tokens (4000 in the messages, 1000 in the completion). Please reduce the length.",
            (4000, 4096),
        ),
        (
            "anthropic",
            "input length and `max_tokens` exceed context limit: 197000 + 8192 > 200000, "
            "decrease input length or `max_tokens` and try again",
            (197000, 200000),
        ),
    ],
)
async def test_overflow_wordings_of_other_servers_are_understood(
    fake: FakeModelServer, open_provider: ProviderFactory, message: str, sizes: tuple[int, int]
) -> None:
    fake.set_script(Script([Turn(error=ScriptedError(status=400, message=message))]))

    _events, error = await events_until_error(open_provider(retry=policy(Sleeps())).stream(ask()))

    assert isinstance(error, ContextOverflowError)
    assert (error.prompt_tokens, error.limit) == sizes


# --------------------------------------------------------------------------- the policy


def test_backoff_doubles_up_to_the_ceiling_with_full_jitter() -> None:
    top = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0, random=lambda: 1.0)
    assert [top.delay_s(retry) for retry in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    draws = iter([0.0, 0.25, 0.5, 0.999])
    jittered = RetryPolicy(base_delay_s=1.0, max_delay_s=30.0, random=lambda: next(draws))
    assert [jittered.delay_s(retry) for retry in range(1, 5)] == [0.0, 0.5, 2.0, 7.992]
    assert RetryPolicy(max_delay_s=30.0, random=lambda: 1.0).delay_s(10_000) == 30.0


def test_retry_after_wins_over_backoff_but_is_capped() -> None:
    retry = RetryPolicy(max_retry_after_s=60.0, random=lambda: 1.0)
    assert retry.delay_s(3, retry_after_s=1.5) == 1.5
    assert retry.delay_s(1, retry_after_s=900.0) == 60.0
    assert retry.delay_s(2, retry_after_s=0.0) == 1.0  # "now" means: back off as usual


def test_retry_after_headers_in_every_form() -> None:
    now = 1_700_000_000.0
    in_ten_seconds = email.utils.formatdate(now + 10, usegmt=True)
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"retry-after": "9"}) == 9.0
    assert retry_after_s({"retry-after": in_ten_seconds}, now=now) == pytest.approx(10.0)
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(408, True), (409, True), (429, True), (500, True), (529, True), (400, False), (404, False)],
)
def test_which_statuses_are_retried(status: int, retryable: bool) -> None:
    assert status_failure(status, {}).retryable is retryable
    # The provider's own x-should-retry header decides when it is sent.
    assert status_failure(status, {"x-should-retry": "false"}).retryable is False
    assert status_failure(status, {"x-should-retry": "true"}).retryable is True


async def test_jittered_delays_reach_the_sleep_through_a_provider(
    fake: FakeModelServer, open_provider: ProviderFactory
) -> None:
    fake.set_script(Script([Turn(error=ScriptedError(status=500))] * 3 + [Turn(text="ok")]))
    draws = iter([0.5, 0.5, 0.5])
    sleeps = Sleeps()
    retry = policy(sleeps, base_delay_s=0.5, random=lambda: next(draws))

    events = await collect(open_provider(retry=retry).stream(ask()))

    assert sleeps.delays == [0.25, 0.5, 1.0]
    assert [r.delay_s for r in retries_of(events)] == sleeps.delays


# --------------------------------------------------------------------------- environment


def test_the_environment_sets_retries_and_base_delay() -> None:
    assert retry_policy(ModelSettings()) == RetryPolicy(max_retries=4, base_delay_s=0.5)
    env = {RETRIES_ENV: "2", RETRY_BASE_DELAY_ENV: "0.1"}
    assert retry_policy(ModelSettings.from_env(env)) == RetryPolicy(max_retries=2, base_delay_s=0.1)


@pytest.mark.parametrize(
    ("name", "value"),
    [(RETRIES_ENV, "many"), (RETRIES_ENV, "-1"), (RETRIES_ENV, "1.5"), (RETRY_BASE_DELAY_ENV, "x")],
)
def test_bad_retry_settings_name_the_variable(name: str, value: str) -> None:
    env = {"OPENAI_API_KEY": "k", name: value}
    with pytest.raises(SettingsError, match=name):  # at start, not at the first model call
        make_provider("openai/gpt-5.4-mini", ModelSettings.from_env(env))


async def test_make_provider_uses_the_retry_settings(fake: FakeModelServer) -> None:
    busy = ScriptedError(status=503, message="busy", retry_after_ms=1)
    fake.set_script(Script([Turn(error=busy)] * 3))
    env = {
        "OPENAI_API_KEY": "k",
        "OPENAI_BASE_URL": fake.openai_base_url,
        RETRIES_ENV: "1",
        RETRY_BASE_DELAY_ENV: "0",
    }
    provider = make_provider("openai/gpt-5.4-mini", ModelSettings.from_env(env))
    assert isinstance(provider, OpenAIProvider)
    async with provider:
        events, error = await events_until_error(provider.stream(ask()))
    assert len(retries_of(events)) == 1 and "after 1 retry" in str(error)
    assert len(fake.requests) == 2
