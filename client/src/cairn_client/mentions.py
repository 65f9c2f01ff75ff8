"""`@path` in what the person types: the workspace's files offered by name, and each file a
sent message mentions attached to it, read through the read tool and the policy.

Owns the file index (ripgrep's listing, once per session, refreshed when stale), finding
mentions in a message, and the attachment format (how it is sent, how it is shown back).
"""

from __future__ import annotations

import asyncio
import heapq
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cairn_protocol import ToolRequest
from cairn_protocol.tools import ReadArgs

from cairn_client.policy.policy import Policy
from cairn_client.tools.files import rg_files
from cairn_client.tools.paths import ToolError
from cairn_client.tools.registry import ShellPlacement, execute_call, prepare_call

# A listing older than this is refreshed (in the background) the next time `@` is completed.
INDEX_MAX_AGE_S = 30.0
INDEX_TIMEOUT_S = 20.0
MAX_INDEXED_FILES = 200_000
SHALLOW_KEPT = 500  # paths a bare `@` may offer (hidden ones are skipped)
# What one message may carry: more mentions than this, or more text, are refused one by one.
MAX_ATTACHMENTS = 10
MAX_ATTACHED_CHARS = 200_000

# `@path` at the start or after whitespace (so `me@example.com` is no mention).
_MENTION = re.compile(r"(?:(?<=\s)|^)@(?P<path>[^\s@]+)")
_TRAILING = ",;:!?)]}'\"."
_OPENING = "<attached-file path="
_ATTACHED = re.compile(r'^<attached-file path=(?P<path>"(?:[^"\\]|\\.)*")>$', re.MULTILINE)

Hidden = Callable[[str], bool]


# --------------------------------------------------------------------------- the file index


class FileIndex:
    """The workspace's files as ripgrep lists them (.gitignore respected) and the folders
    that hold them; `hidden` (what the policy refuses to read) is never offered. Listed once,
    then again only when asked after `max_age_s` (`stale`): completion never waits for it."""

    def __init__(
        self,
        root: Path,
        hidden: Hidden,
        *,
        max_age_s: float = INDEX_MAX_AGE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.hidden = hidden
        self.max_age_s = max_age_s
        self._clock = clock
        self._listing = PathListing.of(())
        self._listed_at: float | None = None
        self._lock = threading.Lock()
        self.problem: str | None = None  # why the last listing failed, if it did

    @classmethod
    def for_policy(cls, root: Path, policy: Policy) -> FileIndex:
        return cls(root, policy.denies_reading)

    @property
    def paths(self) -> tuple[str, ...]:
        """The files and folders (folders end with "/") of the last listing, hidden ones
        included; () before one."""
        return self._listing.paths

    @property
    def listing(self) -> PathListing:
        return self._listing

    @property
    def stale(self) -> bool:
        listed = self._listed_at
        return listed is None or self._clock() - listed > self.max_age_s

    def refresh(self) -> None:
        """List again (blocking: run it in a thread). A failed listing keeps the last one."""
        if not self._lock.acquire(blocking=False):
            return  # a listing is under way
        try:
            finished = rg_files(self.root, newest_first=False, timeout_s=INDEX_TIMEOUT_S)
            names = finished.stdout.decode("utf-8", errors="replace").splitlines()
            files = [name for name in names[:MAX_INDEXED_FILES] if name]
            self._listing = PathListing.of(_with_folders(files), self.hidden)
            self.problem = None
        except (ToolError, OSError) as exc:
            self.problem = str(exc)
        finally:
            self._listed_at = self._clock()
            self._lock.release()


def _with_folders(files: list[str]) -> tuple[str, ...]:
    folders: dict[str, None] = {}
    for name in files:
        parent = name.rpartition("/")[0]
        while parent and parent + "/" not in folders:
            folders[parent + "/"] = None
            parent = parent.rpartition("/")[0]
    return (*folders, *files)


_WORD_START = re.compile(r"(?<![a-z0-9])[a-z0-9]")


@dataclass(frozen=True)
class PathListing:
    """Paths ready to rank: kept shortest first, each lowered once, with its name and the
    initials of its words, so a keystroke costs a pass or two at C speed over a large
    repository's files and no sort. What `hidden` refuses (the policy's deny rules on
    reading, secret files) is never offered: judged for the few paths about to be offered,
    not for every file listed."""

    paths: tuple[str, ...]  # shortest first
    lowered: tuple[str, ...]
    names: tuple[str, ...]
    initials: tuple[str, ...]
    shallow: tuple[str, ...]  # what a bare `@` offers first: the top of the tree
    hidden: Hidden | None = None
    # The last query's matches: typing on narrows them instead of scanning everything again.
    _last: dict[str, list[int]] = field(default_factory=dict, init=False, compare=False, repr=False)

    @classmethod
    def of(cls, paths: Sequence[str], hidden: Hidden | None = None) -> PathListing:
        ordered = sorted(paths, key=lambda path: (len(path), path))
        lowered = tuple(path.lower() for path in ordered)
        names = tuple(path.rstrip("/").rpartition("/")[2] for path in lowered)
        initials = tuple("".join(_WORD_START.findall(path)) for path in lowered)
        shallow = heapq.nsmallest(SHALLOW_KEPT, ordered, key=_depth)
        return cls(tuple(ordered), lowered, names, initials, tuple(shallow), hidden)

    def best(self, query: str, limit: int = 10) -> list[str]:
        """The paths that match `query` best, as Claude Code's `@` does: a name starting
        with it first, then a path starting with it, the name or path containing it, the
        initials of its words ("scc" for src/cart/checkout.py), and last its letters in order;
        shorter paths first within each. Any case."""
        wanted = query.lower()
        if not wanted:
            return self._first(iter(self.shallow), limit)
        search = re.compile(".*?".join(map(re.escape, wanted))).search
        pool = self._pool(wanted, search)
        paths, names, lowered, initials = self.paths, self.names, self.lowered, self.initials
        tiers = (
            (at for at in pool if names[at].startswith(wanted)),
            (at for at in pool if lowered[at].startswith(wanted)),
            (at for at in pool if wanted in names[at]),
            (at for at in pool if wanted in lowered[at]),
            (at for at in pool if search(initials[at])),
            iter(pool),
        )
        return self._first((paths[at] for tier in tiers for at in tier), limit)

    def _pool(self, wanted: str, search: Callable[[str], object]) -> list[int]:
        """Every path with the letters of `wanted` in order (what every tier holds), found
        among the last query's when `wanted` extends it."""
        lowered = self.lowered
        earlier = next(iter(self._last.items()), None)
        if earlier is not None and wanted.startswith(earlier[0]):
            pool = [at for at in earlier[1] if search(lowered[at])]
        else:
            pool = [at for at, path in enumerate(lowered) if search(path)]
        self._last.clear()
        self._last[wanted] = pool
        return pool

    def _first(self, candidates: Iterator[str], limit: int) -> list[str]:
        """The first `limit` different candidates that are not hidden."""
        found: dict[str, None] = {}
        for path in candidates:
            if path not in found and not (self.hidden and self.hidden(path)):
                found[path] = None
                if len(found) >= limit:
                    break
        return list(found)


def _depth(path: str) -> tuple[int, int, str]:
    return (path.count("/") - path.endswith("/"), len(path), path)


def rank_paths(query: str, paths: Sequence[str], limit: int = 10) -> list[str]:
    """`PathListing.best` over `paths`."""
    return PathListing.of(paths).best(query, limit)


# --------------------------------------------------------------------------- attaching


@dataclass(frozen=True)
class Attachment:
    path: str  # workspace-relative, as read resolved it
    content: str  # the read tool's output: numbered lines, redacted

    @property
    def lines(self) -> int:
        return sum(1 for line in self.content.splitlines() if line[:1].isdigit())


@dataclass
class Attached:
    """A message with its mentioned files: `text` is what is sent (the typed text, then
    each file), `typed` what the person wrote; `refused` one line per mention left out."""

    typed: str
    attachments: list[Attachment] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return attachment_text(self.typed, self.attachments)

    def notices(self) -> list[str]:
        """One line per file, for the person: what was attached and what was not."""
        attached = [
            f"Attached {item.path} ({item.lines} line{'s' if item.lines != 1 else ''})"
            for item in self.attachments
        ]
        return [*attached, *self.refused]


def mentions(text: str) -> list[str]:
    """The paths `@mentioned` in `text`, in order, each once (trailing punctuation dropped)."""
    found: dict[str, None] = {}
    for match in _MENTION.finditer(text):
        path = match.group("path").rstrip(_TRAILING)
        if path:
            found[path] = None
    return list(found)


async def attach_mentions(text: str, root: Path, policy: Policy) -> Attached:
    """Read each file `text` mentions as the read tool would for the model: the same
    preparation (paths resolved, outside the workspace refused), the policy's deny rules and
    secret files, the read tool's size caps, redaction. A mention the policy would ask about
    is read: the person typed it, which is their answer. What cannot be read is refused with
    its reason, and the message goes without it."""
    attached = Attached(typed=text)
    allowed = list(policy.settings.allow_secret_files)
    size = 0
    for number, path in enumerate(mentions(text)):
        if len(attached.attachments) >= MAX_ATTACHMENTS:
            attached.refused.append(
                f"@{path} not attached: a message carries at most {MAX_ATTACHMENTS} files"
            )
            continue
        outcome = await _read(root, policy, path, allowed, number)
        if isinstance(outcome, str):
            attached.refused.append(f"@{path} not attached: {outcome}")
        elif size + len(outcome.content) > MAX_ATTACHED_CHARS:
            attached.refused.append(
                f"@{path} not attached: the message already carries {size:,} characters of "
                "files; ask the agent to read it"
            )
        else:
            size += len(outcome.content)
            attached.attachments.append(outcome)
    return attached


async def _read(
    root: Path, policy: Policy, path: str, allowed: list[str], number: int
) -> Attachment | str:
    """The file read as the read tool reads it for the model, or why it cannot be."""
    request = ToolRequest(
        run_id="mention", call_id=f"mention-{number}", tool="read", arguments={"path": path}
    )
    prepared = await asyncio.to_thread(prepare_call, root, request, allowed)
    if prepared.error is not None:
        return prepared.error
    verdict = policy.decide(prepared)
    if verdict.decision == "deny":
        return verdict.reason
    outcome = await execute_call(root, prepared, allowed, placement=ShellPlacement(policy.sandbox))
    if outcome.status != "ok":
        return outcome.reason or "it could not be read"
    shown = prepared.args.path if isinstance(prepared.args, ReadArgs) else path
    return Attachment(shown, outcome.content)


def attachment_text(typed: str, attachments: Sequence[Attachment]) -> str:
    """What the model is sent: the typed text, then each file in its own block."""
    blocks = [
        f"{_OPENING}{json.dumps(item.path)}>\n{item.content}\n</attached-file>"
        for item in attachments
    ]
    return "\n\n".join([typed, *blocks])


def split_attachments(text: str) -> tuple[str, list[str]]:
    """A sent message as the person wrote it, and the paths of the files attached to it."""
    at = text.find("\n\n" + _OPENING)
    if at < 0:
        return text, []
    paths: list[str] = []
    for match in _ATTACHED.finditer(text, at):
        try:
            paths.append(str(json.loads(match.group("path"))))
        except ValueError:
            continue
    return text[:at], paths


class Mentions:
    """One workspace's `@` support for a front end: the file index and attaching."""

    def __init__(self, root: Path, policy: Policy) -> None:
        self.root = root
        self.policy = policy
        self.index = FileIndex.for_policy(root, policy)

    async def attach(self, text: str) -> Attached:
        return await attach_mentions(text, self.root, self.policy)
