"""The fake's recorded requests and the scenario it serves from.

Owns the request log (in memory, optionally appended to a JSON-lines file) and the state
shared by every endpoint: the current script, the context window, the prompt caches and the
models each API lists.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cairn_fakes.models import DEFAULT_ANTHROPIC_MODELS, DEFAULT_OPENAI_MODELS
from cairn_fakes.prompt_cache import PromptCache
from cairn_fakes.script import Script, Turn

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class RecordedRequest:
    """A request exactly as it reached the fake: path, lower-cased headers, JSON body."""

    path: str
    headers: dict[str, str]
    body: JsonObject
    received_at: float = 0.0  # time.perf_counter() on arrival, for latency benchmarks


class RequestLog:
    """Every request the fake received, in order; safe across threads.

    With `record_path`, each request is also appended to that file as one JSON line.
    """

    def __init__(self, record_path: Path | None = None) -> None:
        self._requests: list[RecordedRequest] = []
        self.answer_times: list[float] = []  # perf_counter() when each answer was fully sent
        self._lock = threading.Lock()
        self._record_path = record_path

    def append(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            if self._record_path is not None:
                with self._record_path.open("a", encoding="utf-8") as record:
                    record.write(json.dumps(asdict(request)) + "\n")

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self.answer_times.clear()

    def mark_answered(self) -> None:
        with self._lock:
            self.answer_times.append(time.perf_counter())


async def timed(events: AsyncIterator[str], log: RequestLog) -> AsyncIterator[str]:
    """Pass the stream through, noting when its last byte was handed to the server."""
    async for event in events:
        yield event
    log.mark_answered()


class FakeModelState:
    """What the app serves from: the current script (replaceable), the request log, the
    simulated prompt caches and the context window (None: unlimited)."""

    def __init__(
        self,
        script: Script,
        log: RequestLog,
        context_window: int | None = None,
        quirks: str | None = None,
    ) -> None:
        self._script = script
        # A real server whose behaviour the chat endpoint imitates (cairn_fakes.quirks).
        self.quirks = quirks
        # How many of the imitated model's tokens one cl100k token is (its tokenizer differs):
        # applies to the prompt tokens reported and checked against the window.
        self.token_scale = 1.0
        self._lock = threading.Lock()
        self._context_window: int | None = None
        self.context_window = context_window
        self.log = log
        self.cache = PromptCache()
        # What GET /v1/models lists, per API; a model request naming another gets a 404
        # (except in a quirk mode: llama-cpp-python answers any name with its model).
        self.openai_models: tuple[str, ...] = DEFAULT_OPENAI_MODELS
        self.anthropic_models: tuple[str, ...] = DEFAULT_ANTHROPIC_MODELS
        self.lists_served = 0  # GET /v1/models answered (kept out of the request log)

    @property
    def script(self) -> Script:
        with self._lock:
            return self._script

    def set_script(self, script: Script, *, keep_cache: bool = False) -> None:
        """A new script is a new scenario: the prompt caches start empty unless kept."""
        with self._lock:
            self._script = script
        if not keep_cache:
            self.cache.clear()

    @property
    def context_window(self) -> int | None:
        with self._lock:
            return self._context_window

    @context_window.setter
    def context_window(self, tokens: int | None) -> None:
        if tokens is not None and tokens < 1:
            raise ValueError(f"a context window must be at least 1 token, not {tokens}")
        with self._lock:
            self._context_window = tokens

    def next_turn(self) -> Turn:
        return self.script.next_turn()
