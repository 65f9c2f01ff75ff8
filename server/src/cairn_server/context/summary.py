"""The structured compaction summary: fixed sections, read back, merged with the previous one.

Owns the sections (task, next step, remaining, done, rules, the user's words, files touched,
facts), what is derived without a model, the merge that carries the previous summary forward,
and the trimming that keeps it within its token limit.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from cairn_protocol.tools import patch_header_paths

from cairn_server.context.tokens import count_tokens
from cairn_server.domain import ToolCall
from cairn_server.storage.models import Message
from cairn_server.storage.store import stored_tool_calls

# Sections in the order they are rendered; the model is asked for all but "user" (the
# user's words are quoted by code) and "notes" (whatever came outside a known heading).
TITLES = {
    "task": "Task",
    "next": "Next step",
    "remaining": "Remaining",
    "done": "Done",
    "rules": "Decisions and rules",
    "user": "The user's words",
    "files": "Files touched",
    "facts": "Facts learned",
    "notes": "Notes",
}
ALIASES = {
    **{title.lower(): key for key, title in TITLES.items()},
    "goal": "task",
    "goals": "task",
    "current task": "task",
    "next steps": "next",
    "next": "next",
    "current state": "next",
    "to do": "remaining",
    "todo": "remaining",
    "left": "remaining",
    "rules": "rules",
    "decisions": "rules",
    "user rules": "rules",
    "files": "files",
    "facts": "facts",
    "identifiers": "facts",
    "errors": "facts",
}
# Written as prose (lines kept as they are); the other sections are bullet lists.
PROSE = frozenset({"task", "next", "notes"})
# The newest model's (or digest's) word replaces the previous one's for these; every other
# section is the union of the previous summary and the new one, oldest first.
LATEST_WINS = frozenset({"task", "next", "remaining"})
# Never trimmed while anything else can be: where the work stands and what the user ruled.
PROTECTED = frozenset({"task", "next", "rules"})
USER_QUOTE_CHARS = 300
PATH_CHARS = 200
# A user message that reads as a standing instruction is trimmed only after every other
# quote of the user's: a heuristic, so every quote is kept as long as the limit allows.
RULE_WORDS = re.compile(
    r"\b(always|never|don'?t|do not|must|should|make sure|remember|prefer|avoid|only|"
    r"from now on|rule|instead|use|keep)\b",
    re.IGNORECASE,
)
HEADING = re.compile(
    r"^\s*(#{1,4}\s*)?(\*\*)?\s*("
    + "|".join(re.escape(name) for name in sorted(ALIASES, key=len, reverse=True))
    + r")\b\s*(\*\*)?\s*(:)?\s*(\*\*)?\s*(.*)$",
    re.IGNORECASE,
)
BULLET = re.compile(r"^\s*(?:[-*•]|\d{1,3}[.)])\s+(.*)$")
# Lines code adds around the summary, dropped when it is read back (they are re-added).
HINT_LINE = re.compile(r"^\(\d+ earlier messages were compacted")
WHY_LINE_PREFIX = "(Compacted without a model summary"
FILE_ITEM = re.compile(r"^`?([^\s`]+?)`?[:,]?(?:\s+\(([^)]*)\))?(?:\s+(.*))?$")
SHELL_PATH = re.compile(r"^(?=.*\w)[\w@.-]*/[\w@./-]*$|^[\w@-][\w@.-]*\.[A-Za-z]\w{0,7}$")
VERBS = {"read": "read", "edit": "edited", "write": "written", "apply_patch": "patched"}


@dataclass
class Summary:
    """A summary's sections, each a list of items (lines of prose, or bullets)."""

    sections: dict[str, list[str]] = field(default_factory=dict)

    def items(self, key: str) -> list[str]:
        return self.sections.get(key, [])


def parse_summary(text: str) -> Summary:
    """Read a summary back into its sections: known headings (`## Task`, `Next step:`…),
    bullets, lines continuing a bullet; text under no known heading goes to the notes."""
    summary = Summary()
    key = "notes"
    for line in text.splitlines():
        if not line.strip() or HINT_LINE.match(line) or line.startswith(WHY_LINE_PREFIX):
            continue
        heading = _heading(line)
        if heading is not None:
            key, rest = heading
            summary.sections.setdefault(key, [])
            if not rest:
                continue
            line = rest
        _add_line(summary.sections.setdefault(key, []), line, key in PROSE)
    return summary


def merge(previous: Summary, new: Summary, derived: Summary) -> Summary:
    """The previous summary carried forward: the new answer's task, next step and remaining
    work (the previous ones when it gave none), every other section the union of the
    previous, the new and what code derived, oldest first."""
    merged = Summary()
    for key in TITLES:
        if key in LATEST_WINS:
            merged.sections[key] = list(new.items(key) or previous.items(key))
        elif key == "files":
            merged.sections[key] = merge_files(
                previous.items(key), new.items(key), derived.items(key)
            )
        else:
            # The user's words come from code only: a model's copy of them is not trusted.
            fresh = [] if key == "user" else new.items(key)
            merged.sections[key] = _union(previous.items(key), fresh, derived.items(key))
    return merged


def derived_from(evicted: Sequence[Message]) -> Summary:
    """What is known without a model: the user's messages quoted, and the files the
    compacted tool calls read, edited, wrote, patched or named in a shell command."""
    quotes = [f'"{quoted(m.content, USER_QUOTE_CHARS)}"' for m in evicted if said(m, "user")]
    files: dict[str, list[str]] = {}
    for call in (call for m in evicted for call in stored_tool_calls(m)):
        for path in call_paths(call):
            verbs = files.setdefault(path, [])
            verb = VERBS.get(call.name, call.name)
            if verb not in verbs:
                verbs.append(verb)
    items = [f"{path} ({', '.join(verbs)})" for path, verbs in files.items()]
    return Summary({"user": quotes, "files": items})


def call_paths(call: ToolCall) -> list[str]:
    """The paths a read, edit, write, apply_patch or shell call names (the model's
    arguments: anything too long or multi-line is not taken as a path)."""
    arguments = call.arguments_object
    found: Sequence[object]
    if call.name in ("read", "edit", "write"):
        found = [arguments.get("path")]
    elif call.name == "apply_patch" and isinstance(arguments.get("patch"), str):
        found = patch_header_paths(arguments["patch"])
    elif call.name == "shell" and isinstance(arguments.get("command"), str):
        words = re.split(r"[\s;|&<>()'\"]+", arguments["command"])
        found = [w for w in words if "://" not in w and SHELL_PATH.match(w)]
    else:
        found = []
    return [p for p in found if isinstance(p, str) and 0 < len(p) <= PATH_CHARS and "\n" not in p]


def merge_files(*groups: Iterable[str]) -> list[str]:
    """One item per path, oldest first, with every verb any group gave it and the last
    note (the model's words after the path) any group gave."""
    verbs: dict[str, list[str]] = {}
    notes: dict[str, str] = {}
    for item in (item for group in groups for item in group):
        match = FILE_ITEM.match(item.strip())
        if match is None:
            continue
        path, given, note = match.groups()
        known = verbs.setdefault(path, [])
        for verb in (v.strip() for v in (given or "").split(",")):
            if verb and verb not in known:
                known.append(verb)
        if note:
            notes[path] = note
    return [
        " ".join(
            part for part in (path, f"({', '.join(v)})" if v else "", notes.get(path, "")) if part
        )
        for path, v in verbs.items()
    ]


def render(summary: Summary, why: str | None = None) -> str:
    """The summary as the model reads it: a heading per non-empty section, in TITLES order."""
    parts = [f"{WHY_LINE_PREFIX}: {why}.)"] if why else []
    for key, title in TITLES.items():
        items = summary.items(key)
        if not items:
            continue
        body = "\n".join(items if key in PROSE else (f"- {item}" for item in items))
        parts.append(f"## {title}\n{body}")
    return "\n".join(parts)


def fit(summary: Summary, limit: int, why: str | None = None) -> str:
    """The summary rendered within `limit` tokens: the oldest detail goes first (see
    `_Trimmer`); the task, next step, rules and the user's standing instructions only when
    nothing else is left."""
    trimmer = _Trimmer(summary)
    text = render(summary, why)
    excess = count_tokens(text) - limit
    while excess > 0:
        # Items are dropped until their own tokens cover the excess, then the whole is
        # counted again: a summary merged from a long history is not recounted per item.
        while excess > 0:
            dropped = trimmer.drop_one()
            if dropped is None:
                return _hard_cut(render(trimmer.kept(), why), limit)
            excess -= dropped
        text = render(trimmer.kept(), why)
        excess = count_tokens(text) - limit
    return text


class _Trimmer:
    """Which item of a summary goes next: the oldest of those that may go first (the user's
    plain requests before their standing instructions, files only read before files
    changed), from the section holding the most tokens of such items; then the protected
    ones, oldest first."""

    LAST = ("user", "rules", "task", "next")

    def __init__(self, summary: Summary) -> None:
        self.summary = summary
        self.first = {key: deque(_may_go(key, items)) for key, items in summary.sections.items()}
        self.tokens = {key: sum(_tokens(i) for i in queue) for key, queue in self.first.items()}
        plain = set(self.first.get("user", ()))
        self.last = {
            key: deque(i for i in summary.items(key) if not (key == "user" and i in plain))
            for key in self.LAST
        }
        self.dropped: dict[str, set[str]] = {key: set() for key in TITLES}

    def drop_one(self) -> int | None:
        """Drop the next item; the tokens it took (about), or None when nothing is left."""
        waiting = [key for key, queue in self.first.items() if queue]
        if waiting:
            key = max(waiting, key=lambda k: self.tokens[k])
            item = self.first[key].popleft()
            self.tokens[key] -= _tokens(item)
        else:
            key = next((k for k in self.LAST if self.last[k]), "")
            if not key:
                return None
            item = self.last[key].popleft()
        self.dropped[key].add(item)
        return _tokens(item) + 1

    def kept(self) -> Summary:
        return Summary(
            {
                key: [i for i in items if i not in self.dropped.get(key, ())]
                for key, items in self.summary.sections.items()
            }
        )


def _may_go(key: str, items: list[str]) -> list[str]:
    """The items of a section that may be trimmed before the protected ones, in the order
    they go."""
    if key in PROTECTED:
        return []
    if key == "user":
        return [quote for quote in items if not RULE_WORDS.search(quote)]
    if key == "files":
        return [i for i in items if i.endswith("(read)")] + [
            i for i in items if not i.endswith("(read)")
        ]
    return items


@lru_cache(maxsize=4096)
def _tokens(item: str) -> int:
    return count_tokens(item)


def _hard_cut(text: str, limit: int) -> str:
    while text and count_tokens(text) > limit:
        text = text[: len(text) * 9 // 10]
    return text


def quoted(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _heading(line: str) -> tuple[str, str] | None:
    if BULLET.match(line):
        return None
    match = HEADING.match(line)
    if match is None:
        return None
    hashes, bold, name, _, colon, _, rest = match.groups()
    # "Next, I ran the tests" is prose: a heading is marked (#, **) or ends in a colon.
    if not (hashes or bold or colon):
        return None
    return ALIASES[name.lower()], rest.strip()


def _add_line(items: list[str], line: str, prose: bool) -> None:
    if prose:
        items.append(line.rstrip())
        return
    bullet = BULLET.match(line)
    if bullet is not None or not items:
        items.append((bullet.group(1) if bullet else line).strip())
    else:
        items[-1] = f"{items[-1]} {line.strip()}"


def _union(*groups: Iterable[str]) -> list[str]:
    seen: dict[str, str] = {}
    for item in (item for group in groups for item in group):
        seen.setdefault(_key(item), item)
    return list(seen.values())


def _key(item: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", item.lower()).split())


def said(message: Message, role: str) -> bool:
    """Whether `message` is a non-empty one of `role`'s."""
    return message.role == role and bool(message.content.strip())
