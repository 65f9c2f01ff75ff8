"""What a model call cost: list prices per model and the arithmetic on a Usage.

Prices are USD per million tokens at standard (non-batch, short-context) rates, checked in
November 2026. An unknown model costs 0.0 rather than a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cairn_protocol import Usage


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    input: float
    cached_input: float
    output: float


PRICES: dict[str, Price] = {
    # OpenAI
    "gpt-5.5": Price(5.00, 0.50, 30.00),
    "gpt-5.4": Price(2.50, 0.25, 15.00),
    "gpt-5.4-mini": Price(0.75, 0.075, 4.50),
    "gpt-5.4-nano": Price(0.20, 0.02, 1.25),
    "gpt-4.1": Price(2.00, 0.50, 8.00),
    "gpt-4.1-mini": Price(0.40, 0.10, 1.60),
    "gpt-4o": Price(2.50, 1.25, 10.00),
    "gpt-4o-mini": Price(0.15, 0.075, 0.60),
    # Anthropic (cache writes are billed at the input price here, a slight undercount)
    "claude-opus-5-5": Price(4.00, 0.20, 20.00),
    "claude-opus-4-6": Price(5.00, 0.50, 25.00),
    "claude-opus-4-1": Price(15.00, 1.50, 75.00),
    "claude-sonnet-5-5": Price(2.00, 0.10, 10.00),
    "claude-sonnet-5": Price(2.00, 0.20, 10.00),
    "claude-sonnet-4-6": Price(3.00, 0.30, 15.00),
    "claude-sonnet-4-5": Price(3.00, 0.30, 15.00),
    "claude-haiku-5-5": Price(0.10, 0.01, 0.50),  # prompts up to 100k tokens
    "claude-haiku-4-5": Price(1.00, 0.10, 5.00),
}

# A dated snapshot ("gpt-4o-mini-2024-07-18", "claude-sonnet-4-5-20250929") costs what its
# family costs; any other suffix ("gpt-5.4-pro") is a different model and is not matched.
_SNAPSHOT_SUFFIX = re.compile(r"-\d{4}-?\d{2}-?\d{2}$")
_PROVIDER_PREFIX = re.compile(r"^(openai|anthropic)/")


def model_family(model: str) -> str:
    """The model's name without its provider prefix and snapshot date."""
    return _SNAPSHOT_SUFFIX.sub("", _PROVIDER_PREFIX.sub("", model))


def price_for(model: str) -> Price | None:
    name = _PROVIDER_PREFIX.sub("", model)
    return PRICES.get(name) or PRICES.get(model_family(model))


def cost_usd(model: str, usage: Usage) -> float:
    """The list-price cost of one call; `usage.input_tokens` includes the cached ones."""
    price = price_for(model)
    if price is None:
        return 0.0
    cached = min(usage.cached_input_tokens, usage.input_tokens)
    uncached = usage.input_tokens - cached
    dollars_per_million = (
        uncached * price.input + cached * price.cached_input + usage.output_tokens * price.output
    )
    return dollars_per_million / 1_000_000


def priced_usage(
    model: str, *, input_tokens: int, cached_input_tokens: int, output_tokens: int
) -> Usage:
    """A call's token counts with their cost; `input_tokens` includes the cached ones."""
    usage = Usage(
        input_tokens=input_tokens,
        cached_input_tokens=cached_input_tokens,
        output_tokens=output_tokens,
    )
    usage.cost_usd = cost_usd(model, usage)
    return usage
