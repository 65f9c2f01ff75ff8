"""How many tokens each model's context window holds, so a budget never exceeds it.

Owns the table of windows (input and output together, per the vendors' model pages) and the
fallback for a model it does not know.
"""

from __future__ import annotations

from cairn_server.providers.pricing import model_family

# Tokens, checked in November 2026. Dated snapshots share their family's window.
CONTEXT_WINDOWS: dict[str, int] = {
    "gpt-5.5": 400_000,
    "gpt-5.4": 400_000,
    "gpt-5.4-mini": 400_000,
    "gpt-5.4-nano": 400_000,
    "gpt-4.1": 1_047_576,
    "gpt-4.1-mini": 1_047_576,
    "gpt-4o": 128_000,
    "gpt-4o-mini": 128_000,
    "claude-opus-5-5": 200_000,
    "claude-opus-4-6": 200_000,
    "claude-opus-4-1": 200_000,
    "claude-sonnet-5-5": 200_000,
    "claude-sonnet-5": 200_000,
    "claude-sonnet-4-6": 200_000,
    "claude-sonnet-4-5": 200_000,
    "claude-haiku-5-5": 200_000,
    "claude-haiku-4-5": 200_000,
}
# An unknown model (a local server's, say) is assumed to hold this much; a smaller window
# shows up as the provider's overflow error, which compacts and retries once.
UNKNOWN_WINDOW = 128_000


def context_window(model: str) -> int:
    """The window of a model spec ("openai/gpt-4o", "anthropic/claude-sonnet-4-6", a bare
    name, or a dated snapshot)."""
    return CONTEXT_WINDOWS.get(model_family(model), UNKNOWN_WINDOW)


def window_is_known(model: str) -> bool:
    """Whether the table knows the model's window (else UNKNOWN_WINDOW is a guess)."""
    return model_family(model) in CONTEXT_WINDOWS
