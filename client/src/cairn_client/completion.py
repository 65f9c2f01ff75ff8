"""Completion at the prompt, one mechanism for both kinds: `/name` from the command table and
`@path` from the workspace's file index.

Owns finding the word at the cursor, the candidates offered for it, and what accepting one
makes of the text; the TUI's prompt shows them (never imports Textual).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cairn_client.commands import commands_for
from cairn_client.mentions import PathListing

MAX_CANDIDATES = 10


@dataclass(frozen=True)
class Candidate:
    replacement: str  # what replaces the word, e.g. "/compact " or "@src/app.py "
    label: str  # what the list shows, e.g. "/compact [focus]"
    help: str = ""
    submits: bool = False  # a command without argument runs when accepted with Enter


@dataclass(frozen=True)
class Completion:
    """The candidates for the word `text[start:end]` (the one the cursor is in)."""

    start: int
    end: int
    word: str
    candidates: tuple[Candidate, ...]

    def apply(self, text: str, candidate: Candidate) -> tuple[str, int]:
        """The text with the word replaced by the candidate, and the cursor after it."""
        new = text[: self.start] + candidate.replacement + text[self.end :].lstrip(" ")
        return new, self.start + len(candidate.replacement)

    def settled(self) -> bool:
        """The word already is the only candidate (nothing left to complete)."""
        return len(self.candidates) == 1 and self.exact()

    def exact(self) -> bool:
        """The word already is one of the candidates (`/mode` while `/model` is offered too):
        Enter sends it as typed."""
        return any(candidate.replacement.strip() == self.word for candidate in self.candidates)


def complete(
    text: str, cursor: int, files: Callable[[], PathListing] | None = None
) -> Completion | None:
    """What can complete the word at `cursor`: a command when the text starts with `/` and
    the cursor is in its first word, a workspace path after `@`; None for anything else."""
    start = cursor
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    end = cursor
    while end < len(text) and not text[end].isspace():
        end += 1
    word = text[start:cursor]
    if word.startswith("/") and not text[:start].strip():
        candidates = _commands(word[1:])
    elif word.startswith("@") and files is not None:
        candidates = _paths(word[1:], files())
    else:
        return None
    if not candidates:
        return None
    return Completion(start, end, text[start:end], tuple(candidates))


def _commands(typed: str) -> list[Candidate]:
    wanted = typed.lower()
    commands = commands_for("tui")
    starting = [command for command in commands if command.name.startswith(wanted)]
    inside = [
        command
        for command in commands
        if wanted and wanted in command.name and command not in starting
    ]
    return [
        Candidate(
            f"/{command.name}" + (" " if command.argument != "none" else ""),
            command.usage,
            command.help,
            submits=command.argument == "none",
        )
        for command in [*starting, *inside][:MAX_CANDIDATES]
    ]


def _paths(typed: str, listing: PathListing) -> list[Candidate]:
    return [
        # A folder keeps the word open, so its files are offered next.
        Candidate(f"@{path}" + ("" if path.endswith("/") else " "), path)
        for path in listing.best(typed, MAX_CANDIDATES)
    ]
