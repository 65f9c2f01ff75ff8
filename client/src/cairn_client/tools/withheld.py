"""Cutting from a shell command's output what the user's read rules withhold from the model.

Owns the one output shape that can show a withheld file without naming it in the command: a
git diff (`git log -p`, `git show`, `git diff`), whose sections for such files are replaced.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pathspec

# A diff section starts at `diff --git a/X b/Y` and runs to the next one or to a line that
# cannot belong to a diff (git log's `commit …` header).
_SECTION = re.compile(
    r"^diff --git (?:\"?a/(?P<old>[^\n]*?)\"?) (?:\"?b/(?P<new>[^\n]*?)\"?)\n"
    r"(?P<body>(?:(?!diff --git |commit [0-9a-f]{7,}\b)[^\n]*\n?)*)",
    re.MULTILINE,
)


def withhold_diff_sections(text: str, patterns: Sequence[str]) -> tuple[str, int]:
    """`text` with the diff sections of files the gitignore-style `patterns` cover replaced
    by a one-line note, and how many were replaced."""
    if not patterns or "diff --git " not in text:
        return text, 0
    spec = pathspec.PathSpec.from_lines("gitignore", patterns)
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        paths = {match.group("old"), match.group("new")}
        if not any(spec.match_file(path) for path in paths):
            return match.group()
        count += 1
        name = match.group("new")
        note = f"[the diff of {name} is withheld by your read rules]"
        return f"diff --git a/{name} b/{name}\n{note}\n"

    return _SECTION.sub(replace, text), count
