"""What the fake model servers answer: a list of scripted turns, consumed one per request.

Owns the script format (`{"turns": [...]}` in JSON), its validation and thread-safe consumption.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

NO_MORE_TURNS_TEXT = "(the fake model has no more scripted turns)"


class ScriptModel(BaseModel):
    """Script entries reject unknown keys so a typo in a script file fails loudly."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ScriptedToolCall(ScriptModel):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str | None = Field(
        default=None, description="Sent verbatim instead of the JSON of `arguments`."
    )

    def arguments_text(self) -> str:
        if self.raw_arguments is not None:
            return self.raw_arguments
        return json.dumps(self.arguments)


class ScriptedError(ScriptModel):
    """Answer with this HTTP error, in the provider's own error format."""

    status: int = Field(ge=400, le=599)
    message: str = "scripted error"
    retry_after_ms: int | None = Field(
        default=None, description="Sent as the retry-after-ms header, which the SDKs honour."
    )
    retry_after_s: float | None = Field(
        default=None,
        ge=0,
        description="Sent as the standard retry-after header, in seconds (both may be sent).",
    )


class Turn(ScriptModel):
    """One model answer: text, then tool calls (or an error instead)."""

    text: str = ""
    thinking: str = Field(
        default="", description="Anthropic only: a signed thinking block before the answer."
    )
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    delay_s: float = Field(default=0.0, ge=0, description="Wait before answering.")
    chunk_size: int = Field(default=8, ge=1, description="Characters per streamed delta.")
    chunk_delay_s: float = Field(default=0.0, ge=0, description="Wait between streamed deltas.")
    cached_input_tokens: int = Field(
        default=0,
        ge=0,
        description="When > 0, reported as the cache hits instead of the simulated prompt cache.",
    )
    reports_usage: bool = Field(
        default=True,
        description=(
            "OpenAI streams only: False leaves out the usage chunk even when the request asks "
            "for it (stream_options.include_usage), as some local servers do."
        ),
    )
    cut_at_cap: bool = Field(
        default=False,
        description=(
            'End as an answer cut at the request\'s token cap: finish_reason "length" '
            '(OpenAI), stop_reason "max_tokens" (Anthropic).'
        ),
    )
    error: ScriptedError | None = None
    fault: Literal["drop_stream", "end_stream_early"] | None = Field(
        default=None,
        description=(
            "drop_stream: send about half of the answer (at least one text chunk when there is "
            "text; half the JSON body when not streamed), then close the connection without "
            "the final events, as a failing network or proxy would. end_stream_early: the "
            "same part of a streamed answer, then end the stream cleanly without its final "
            "events (no finish_reason or [DONE]; no message_delta or message_stop); plain "
            "answers are sent whole."
        ),
    )


class ScriptFile(ScriptModel):
    turns: tuple[Turn, ...] = ()


class ScriptError(ValueError):
    """A script file or dict that cannot be used; the message says where and why."""


class Script:
    """Scripted turns handed out in order, whichever endpoint asks; safe across threads."""

    def __init__(self, turns: Sequence[Turn] = ()) -> None:
        self._turns = list(turns)
        self._next = 0
        self._lock = threading.Lock()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Script:
        try:
            parsed = ScriptFile.model_validate(data)
        except ValidationError as exc:
            raise ScriptError(f"invalid fake model script: {exc}") from exc
        return cls(parsed.turns)

    @classmethod
    def from_file(cls, path: str | Path) -> Script:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ScriptError(f"cannot read fake model script {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ScriptError(f"fake model script {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ScriptError(f'fake model script {path} must be a JSON object {{"turns": [...]}}')
        return cls.from_dict(data)

    @classmethod
    def of_texts(cls, *texts: str) -> Script:
        """A script of plain text answers, the common case in tests."""
        return cls([Turn(text=text) for text in texts])

    def next_turn(self) -> Turn:
        """The next scripted turn, or a fixed text turn once the script is used up."""
        with self._lock:
            if self._next >= len(self._turns):
                return Turn(text=NO_MORE_TURNS_TEXT)
            turn = self._turns[self._next]
            self._next += 1
            return turn

    @property
    def consumed(self) -> int:
        with self._lock:
            return self._next

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self._turns) - self._next
