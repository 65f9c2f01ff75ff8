"""What a person is shown of a tool call's result: a one-line summary and a capped text.

Owns the cut both sides make: the client for a call it just ran, the server for a call in
a conversation's history, so a result reads the same live and after a restart.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

# The shown text keeps this many lines from the start and from the end of a longer result.
HEAD_LINES = 30
TAIL_LINES = 30
LINE_CHARS = 240  # longer lines are cut, with "…"
SUMMARY_CHARS = 70

# Tools whose result is a list (lines of a file, matches, paths): summarised by its length.
_COUNTED = {"read": "line", "grep": "line", "glob": "path"}
_SHELL_LABELS = frozenset({"stdout:", "stderr:"})


class ResultPreview(BaseModel):
    """A tool result as a person sees it: `summary` under the call, `text` when expanded
    (at most HEAD_LINES + TAIL_LINES lines of LINE_CHARS, with a note of what was left out),
    `lines` in the whole result."""

    summary: str
    text: str
    lines: int = Field(ge=0)


def result_preview(tool: str, content: str) -> ResultPreview:
    """The preview of `content`, which must be what the model was given (already redacted)."""
    lines = content.rstrip("\n").splitlines() if content.strip() else []
    return ResultPreview(summary=_summary(tool, lines), text=_capped(lines), lines=len(lines))


def _summary(tool: str, lines: list[str]) -> str:
    if not lines:
        return "(no output)"
    if tool == "shell":
        return _shell_summary(lines)
    noun = _COUNTED.get(tool)
    if noun is not None and len(lines) > 1:
        return _count(len(lines), noun)
    first = _cut(" ".join(lines[0].split()), SUMMARY_CHARS)
    return first if len(lines) == 1 else f"{first} … +{_count(len(lines) - 1, 'line')}"


def _shell_summary(lines: list[str]) -> str:
    """`exit code 0 · 42 lines of output`: the shell tool's status line, then how much it
    printed (its stdout: and stderr: labels not counted)."""
    status = _cut(lines[0].replace("exit code:", "exit code"), SUMMARY_CHARS)
    output = [line for line in lines[1:] if line not in _SHELL_LABELS]
    if not output or output == ["(no output)"]:
        return f"{status} · no output"
    if len(output) == 1:
        return f"{status} · {_cut(output[0].strip(), SUMMARY_CHARS)}"
    return f"{status} · {_count(len(output), 'line')} of output"


def _capped(lines: list[str]) -> str:
    shown = [_cut(line, LINE_CHARS) for line in lines]
    if len(shown) > HEAD_LINES + TAIL_LINES:
        left_out = len(shown) - HEAD_LINES - TAIL_LINES
        shown = [*shown[:HEAD_LINES], f"… {_count(left_out, 'line')} not shown …"] + shown[
            -TAIL_LINES:
        ]
    return "\n".join(shown)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def not_run(why: str) -> str:
    """The reason of a call the model made that no client was asked to run, because its run
    ended first (the server stores it; the client shows it the same way live)."""
    return f"not run: {why}"


def failure_reason(reason: str | None, content: str) -> str | None:
    """Why a call failed as a person is told it: its reason, else its output's first line."""
    if reason:
        return reason
    first = " ".join(content.strip().split("\n", 1)[0].split())
    return _cut(first, SUMMARY_CHARS) if first else None
