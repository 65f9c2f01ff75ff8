"""Applying unified diffs the way models write them: hunks found by content, never guessed.

Owns the lenient diff parser, locating each hunk uniquely (line numbers only where content
cannot decide and the file confirms them), and the per-hunk reasons a patch is refused; pure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

DEV_NULL = "/dev/null"
# A tie between equal matches is broken by the @@ line only when it is this close ...
_HINT_NEAR = 10
# ... and every other match is at least this many times further (plus _HINT_NEAR) away.
_HINT_MARGIN = 3
# A hunk placed with a line skipped on either side must still match this many non-blank lines.
_TOLERANT_ANCHOR = 3
_NOISE_PREFIXES = (
    "index ",
    "new file mode",
    "deleted file mode",
    "old mode",
    "new mode",
    "similarity index",
    "dissimilarity index",
    "copy from",
    "copy to",
)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class HunkProblem:
    """Why one hunk (or, with hunk None, one file section) could not be applied."""

    path: str
    hunk: int | None
    header: str
    why: str

    def __str__(self) -> str:
        if self.hunk is None:
            return f"{self.path}: {self.why}"
        return f"hunk {self.hunk} ({self.header}) of {self.path} {self.why}"


class PatchError(ValueError):
    """The patch was refused as a whole; `problems` says why, hunk by hunk."""

    def __init__(self, problems: Sequence[HunkProblem | str]) -> None:
        self.problems = [
            p if isinstance(p, HunkProblem) else HunkProblem("patch", None, "", p) for p in problems
        ]
        lines = [
            str(p) if p.path != "patch" or p.hunk is not None else p.why for p in self.problems
        ]
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class PatchLine:
    kind: str  # " ", "-" or "+"
    text: str  # without its line ending
    no_newline: bool = False  # followed by "\ No newline at end of file"
    bare: bool = False  # an empty line in the patch, read as blank context


@dataclass
class Hunk:
    header: str
    old_start: int | None = None
    old_length: int | None = None
    new_start: int | None = None
    new_length: int | None = None
    lines: list[PatchLine] = field(default_factory=list)
    headerless: bool = False  # no @@ line at all: hunks the model ran together, perhaps

    @property
    def label(self) -> str:
        if self.old_start is None:
            return "@@ @@"
        return f"@@ -{self.old_start},{self.old_length if self.old_length is not None else 1} @@"

    @property
    def has_markers(self) -> bool:
        return any(line.no_newline for line in self.lines)

    def counts_pending(self) -> bool:
        """True while the header's old count says more source lines follow."""
        return self.old_length is not None and self.count(" -") < self.old_length

    def wants_more(self) -> bool:
        """True while either of the header's counts says more lines follow."""
        return self.counts_pending() or (
            self.new_length is not None and self.count(" +") < self.new_length
        )

    def count(self, kinds: str) -> int:
        return sum(1 for line in self.lines if line.kind in kinds)


@dataclass
class FilePatch:
    source: str
    target: str
    hunks: list[Hunk] = field(default_factory=list)

    @property
    def creates(self) -> bool:
        return self.source == DEV_NULL

    @property
    def deletes(self) -> bool:
        return self.target == DEV_NULL

    @property
    def renames(self) -> bool:
        return DEV_NULL not in (self.source, self.target) and self.source != self.target

    @property
    def path(self) -> str:
        return self.source if self.deletes else self.target


_COUNTS = re.compile(r"([-+])(\d+)(?:,(\d+))?")


def parse_patch(patch: str) -> list[FilePatch]:
    """File sections and hunks, read leniently: counts, numbers and prefixes may be off."""
    lines = [line.removesuffix("\r") for line in patch.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    sections: list[FilePatch] = []
    hunk: Hunk | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        if _is_file_header(lines, index) and (hunk is None or not hunk.counts_pending()):
            _close(hunk)
            _add_section(sections, _file_patch(lines[index][4:], lines[index + 1][4:]))
            hunk, index = None, index + 2
            continue
        if _is_rename(lines, index):
            _close(hunk)
            _add_section(
                sections, FilePatch(lines[index][12:].strip(), lines[index + 1][10:].strip())
            )
            hunk, index = None, index + 2
            continue
        index += 1
        if line.startswith("@@"):
            _close(hunk)
            hunk = _hunk(line)
            _current(sections, line).hunks.append(hunk)
        elif line.startswith(("diff --git ", "diff -")):
            _close(hunk)
            hunk = None
        elif line.startswith(("Binary files ", "GIT binary patch")):
            raise PatchError(["binary patches are not supported"])
        elif hunk is not None and _add_body_line(hunk, line):
            continue
        elif hunk is not None and _breaks_hunk(hunk, lines, index):
            raise PatchError([_unprefixed(sections[-1], hunk, index, line)])
        elif hunk is None and sections and line[:1] in ("-", "+", " ") and line.strip():
            if line.startswith(_NOISE_PREFIXES):
                continue
            hunk = Hunk("@@ @@", headerless=True)  # a model that left out the @@ line
            sections[-1].hunks.append(hunk)
            _add_body_line(hunk, line)
        else:
            _close(hunk)
            hunk = None
    _close(hunk)
    sections = [s for s in sections if s.hunks or s.creates or s.deletes or s.renames]
    if not sections:
        raise PatchError(
            [
                "no file changes found in the patch; expected `--- a/path`, `+++ b/path` "
                "and `@@ -l,n +l,n @@` hunks"
            ]
        )
    return sections


def patch_paths(patch: str) -> list[str]:
    """The file names `apply_patch` will look up in its `files`, in patch order (both names
    of a renamed file)."""
    names = []
    for section in parse_patch(patch):
        names += [section.source, section.target] if section.renames else [section.path]
    return list(dict.fromkeys(names))


def _is_rename(lines: list[str], index: int) -> bool:
    """git's `rename from X` / `rename to Y` pair (a rename may come without hunks)."""
    return _pair(lines, index, "rename from ", "rename to ")


def _is_file_header(lines: list[str], index: int) -> bool:
    return _pair(lines, index, "--- ", "+++ ")


def _pair(lines: list[str], index: int, first: str, second: str) -> bool:
    """Whether the line at `index` starts with `first` and the next one with `second`."""
    return (
        lines[index].startswith(first)
        and index + 1 < len(lines)
        and lines[index + 1].startswith(second)
    )


def _add_section(sections: list[FilePatch], section: FilePatch) -> None:
    """A new file section, unless it repeats the rename header just read."""
    last = sections[-1] if sections else None
    names = (section.source, section.target)
    if last is not None and not last.hunks and (last.source, last.target) == names:
        return
    sections.append(section)


def _current(sections: list[FilePatch], line: str) -> FilePatch:
    if not sections:
        raise PatchError(
            [f"could not parse the patch: the hunk {line!r} comes before any --- / +++ lines"]
        )
    return sections[-1]


def _hunk(line: str) -> Hunk:
    inner = line.strip("@ ").split("@@")[0]
    hunk = Hunk(line)
    for sign, start, length in _COUNTS.findall(inner):
        count = int(length) if length else 1
        if sign == "-" and hunk.old_start is None:
            hunk.old_start, hunk.old_length = int(start), count
        elif sign == "+" and hunk.new_start is None:
            hunk.new_start, hunk.new_length = int(start), count
    return hunk


def _add_body_line(hunk: Hunk, line: str) -> bool:
    kind = line[:1]
    if line == "":
        hunk.lines.append(PatchLine(" ", "", bare=True))
    elif kind in (" ", "-", "+"):
        hunk.lines.append(PatchLine(kind, line[1:]))
    elif kind == "\\":
        if hunk.lines:
            last = hunk.lines[-1]
            hunk.lines[-1] = PatchLine(last.kind, last.text, no_newline=True)
    else:
        return False
    return True


def _breaks_hunk(hunk: Hunk, lines: list[str], index: int) -> bool:
    """Whether the unprefixed line before `index` sits inside the hunk, where it would be lost:

    the header's counts want more lines, or hunk lines follow it. A line of dots between two
    runs of hunk lines is the model's "unchanged lines left out" and only ends the hunk.
    """
    if set(lines[index - 1].strip()) <= {".", "\u2026"}:
        return False
    if hunk.wants_more():
        return True
    for at in range(index, len(lines)):
        if lines[at].strip():
            return lines[at][:1] in (" ", "+", "-") and not _is_file_header(lines, at)
    return False


def _unprefixed(section: FilePatch, hunk: Hunk, index: int, line: str) -> HunkProblem:
    why = (
        f"goes on after line {index} of the patch, {line!r}, which has no ' ', '-' or '+' "
        "prefix; if it is a new line, prefix it with +; if it is unchanged, with a space"
    )
    return HunkProblem(section.path, len(section.hunks), hunk.label, why)


def _close(hunk: Hunk | None) -> None:
    """Trailing empty lines are as likely separators as blank context: drop them (safe)."""
    while hunk is not None and hunk.lines and hunk.lines[-1].bare:
        hunk.lines.pop()


def _file_patch(source: str, target: str) -> FilePatch:
    old, new = _clean_name(source), _clean_name(target)
    old_prefixed, new_prefixed = old.startswith("a/"), new.startswith("b/")
    if DEV_NULL in (old, new):
        old = old[2:] if old_prefixed else old
        new = new[2:] if new_prefixed else new
    elif old_prefixed and new_prefixed:
        old, new = old[2:], new[2:]
    elif old_prefixed and old[2:] == new:
        old = new
    elif new_prefixed and new[2:] == old:
        new = old
    return FilePatch(_dot_free(old), _dot_free(new))


def _clean_name(name: str) -> str:
    name = name.split("\t")[0].strip()  # `diff -u` appends a tab and a timestamp
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = name[1:-1]
    return name


def _dot_free(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name


# --------------------------------------------------------------------------- applying


def apply_patch(patch: str, files: Mapping[str, str]) -> dict[str, str | None]:
    """The new content of every file the patch touches (None: deleted).

    `files` holds the current text of each existing file named by `patch_paths`.
    Every hunk must land at exactly one place; otherwise PatchError lists why, per hunk.
    """
    problems: list[HunkProblem] = []
    results: dict[str, str | None] = {}
    parsed = parse_patch(patch)
    for section in [s for s in parsed if s.renames]:
        results.update(_renamed(section, files, problems, _others(parsed, section)))
    for path, sections in _by_path([s for s in parsed if not s.renames]).items():
        outcome = _apply_file(path, sections, files.get(path), problems)
        if not isinstance(outcome, _Failed):
            results[path] = outcome
    if problems:
        raise PatchError(problems)
    return results


class _Failed:
    """A file section that could not be applied (its problems are already recorded)."""


def _by_path(sections: list[FilePatch]) -> dict[str, list[FilePatch]]:
    grouped: dict[str, list[FilePatch]] = {}
    for section in sections:
        grouped.setdefault(section.path, []).append(section)
    return grouped


def _others(sections: list[FilePatch], rename: FilePatch) -> bool:
    """Whether another section also touches a renamed file's old or new name."""
    names = {rename.source, rename.target}
    return any(s is not rename and {s.source, s.target} & names for s in sections)


def _renamed(
    section: FilePatch, files: Mapping[str, str], problems: list[HunkProblem], others: bool
) -> dict[str, str | None]:
    """The old name deleted and the new one holding the (patched) content."""
    source, target = section.source, section.target
    why = None
    if others:
        why = f"{source} is renamed to {target} and patched elsewhere too; one section each"
    elif target in files:
        why = f"cannot rename {source} to {target}: {target} already exists"
    elif source not in files:
        why = f"cannot rename {source}: file not found"
    if why is not None:
        problems.append(HunkProblem(source, None, "", why))
        return {}
    content = files[source]
    if section.hunks:
        patched = _apply_hunks(source, content, section.hunks, problems)
        if patched is None:
            return {}
        content = patched
    return {source: None, target: content}


def _apply_file(
    path: str, sections: list[FilePatch], content: str | None, problems: list[HunkProblem]
) -> str | None | _Failed:
    creates = any(section.creates for section in sections)
    deletes = any(section.deletes for section in sections)
    hunks = [hunk for section in sections for hunk in section.hunks]
    pure_additions = all(line.kind == "+" for hunk in hunks for line in hunk.lines)
    if creates and content is not None:
        why = f"the patch creates {path}, but it already exists; patch it with --- a/{path}"
        problems.append(HunkProblem(path, None, "", why))
        return _Failed()
    if content is None:
        if creates or (pure_additions and not deletes):
            return _created(hunks)
        why = f"file not found: {path}; to create it, use --- /dev/null"
        problems.append(HunkProblem(path, None, "", why))
        return _Failed()
    result = _apply_hunks(path, content, hunks, problems)
    if result is None or not deletes:
        return _Failed() if result is None else result
    if result.strip():
        why = f"the patch deletes {path}, but its removed lines are not the whole file"
        problems.append(HunkProblem(path, None, "", why))
        return _Failed()
    return None


def _created(hunks: list[Hunk]) -> str:
    added = [line for hunk in hunks for line in hunk.lines if line.kind == "+"]
    text = "".join(line.text + "\n" for line in added)
    return text[:-1] if added and added[-1].no_newline else text


@dataclass(frozen=True)
class _Placement:
    """Where a hunk goes in the original file, and the raw lines that replace that span."""

    hunk: int
    start: int
    end: int
    lines: list[str]


def _apply_hunks(
    path: str, content: str, hunks: list[Hunk], problems: list[HunkProblem]
) -> str | None:
    text = _Text(content)
    hunks = [piece for hunk in hunks for piece in _cut_run_together(text, hunk)]
    placements: list[_Placement] = []
    failed = False
    for number, (hunk, outcome) in enumerate(zip(hunks, _locate(text, hunks), strict=True), 1):
        if isinstance(outcome, _Refused):
            problems.append(HunkProblem(path, number, hunk.label, outcome.why))
            failed = True
        else:
            placements.append(outcome)
    placements.sort(key=lambda placement: (placement.start, placement.end))
    for before, after in zip(placements, placements[1:], strict=False):
        if after.start < before.end:
            why = (
                f"overlaps hunk {before.hunk} (both change lines {after.start + 1}-"
                f"{before.end}); merge the two hunks into one"
            )
            problems.append(HunkProblem(path, after.hunk, hunks[after.hunk - 1].label, why))
            failed = True
    return None if failed else text.rebuild(placements)


class _Text:
    """One file's lines: raw (with endings) for output, bare (no ending) for matching."""

    def __init__(self, content: str) -> None:
        pieces = content.split("\n")
        self.raw = [piece + "\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
        self.bare = [line.rstrip("\n").removesuffix("\r") for line in self.raw]
        self.eol = "\r\n" if self.raw and self.raw[0].endswith("\r\n") else "\n"
        self.final_newline = not self.raw or self.raw[-1].endswith("\n")
        self._indexes: dict[str, dict[str, list[int]]] = {}

    def positions(self, norm: _Norm, key: str) -> list[int]:
        index = self._indexes.get(norm.name)
        if index is None:
            index = {}
            for at, line in enumerate(self.bare):
                index.setdefault(norm.key(line), []).append(at)
            self._indexes[norm.name] = index
        return index.get(key, [])

    def rebuild(self, placements: list[_Placement]) -> str:
        out: list[str] = []
        at = 0
        for placement in placements:
            out.extend(self.raw[at : placement.start])
            out.extend(placement.lines)
            at = placement.end
        out.extend(self.raw[at:])
        for index in range(len(out) - 1):  # a former last line may now need its newline
            if not out[index].endswith("\n"):
                out[index] += self.eol
        return "".join(out)


# --------------------------------------------------------------------------- locating


class _Refused(Exception):
    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass(frozen=True)
class _Norm:
    name: str
    key: Callable[[str], str]
    reindents: bool = False


_NORMS = (
    _Norm("exact", lambda line: line),
    _Norm("trailing", str.rstrip),
    _Norm("indent", str.strip, reindents=True),
)

# A pattern lists, per file line of the window, the before-line it matches or None (a file
# line the model left out). Before-lines not in the pattern are context the file lacks.
_Pattern = tuple[int | None, ...]


@dataclass(frozen=True)
class _Candidate:
    start: int
    pattern: _Pattern
    indent: _Indent | None


@dataclass(frozen=True)
class _Search:
    """Where content alone puts a hunk: every candidate, and whether they are firm.

    Firm: the hunk's lines match in full, or with one line left out or extra and still
    enough non-blank lines. Loose candidates (fewer) stand only where line numbers agree.
    """

    before: list[PatchLine]
    candidates: list[_Candidate]
    firm: bool


# Per hunk, its distinct firm placements (by start), a refusal, or None: not firm.
_Firm = list[tuple[int, _Placement]] | _Refused | None


def _locate(text: _Text, hunks: list[Hunk]) -> list[_Placement | _Refused]:
    """Each hunk's place: by content where it is unique; by line numbers the file confirms."""
    searches = [_search(text, hunk) for hunk in hunks]
    firm = [
        _firm(text, number, hunk, search)
        for number, (hunk, search) in enumerate(zip(hunks, searches, strict=True), 1)
    ]
    numbers = _judge_numbers(hunks, firm)
    twins = _twins(hunks, firm)
    outcomes: list[_Placement | _Refused] = []
    for number, (hunk, search, found) in enumerate(zip(hunks, searches, firm, strict=True), 1):
        if number in twins:
            outcomes.append(twins[number])
            continue
        try:
            outcomes.append(_place(text, number, hunk, search, found, numbers))
        except _Refused as refused:
            outcomes.append(refused)
    return outcomes


def _cut_run_together(text: _Text, hunk: Hunk) -> list[Hunk]:
    """A hunk without an @@ line that matches nowhere as a whole, cut into the hunks the
    model ran together: each cut between two unchanged lines, each piece the longest that
    matches the file exactly, further down than the piece before; else the hunk as it is."""
    if not hunk.headerless or _search(text, hunk).candidates:
        return [hunk]
    cuts = [
        at
        for at in range(1, len(hunk.lines))
        if hunk.lines[at - 1].kind == hunk.lines[at].kind == " "
    ]
    pieces: list[Hunk] = []
    begin, floor = 0, 0
    while begin < len(hunk.lines):
        for end in [len(hunk.lines), *reversed([at for at in cuts if at > begin])]:
            piece = replace(hunk, lines=hunk.lines[begin:end])
            starts = [start for start in _exact_starts(text, piece) if start >= floor]
            if starts:
                break
        else:
            return [hunk]
        pieces.append(piece)
        begin, floor = end, min(starts) + piece.count(" -")
    return [piece for piece in pieces if piece.count("+-")]


def _exact_starts(text: _Text, hunk: Hunk) -> list[int]:
    before = [line for line in hunk.lines if line.kind != "+"]
    for norm in _NORMS if before else ():
        found = _candidates(text, hunk, before, norm, False, _TOLERANT_ANCHOR)
        if found:
            return [candidate.start for candidate in found]
    return []


def _search(text: _Text, hunk: Hunk) -> _Search:
    before = [line for line in hunk.lines if line.kind != "+"]
    if before:
        for tolerant in (False, True):
            for norm in _NORMS:
                found = _candidates(text, hunk, before, norm, tolerant, _TOLERANT_ANCHOR)
                if found:
                    return _Search(before, found, firm=True)
        for norm in _NORMS:
            found = _candidates(text, hunk, before, norm, True, 1)
            if found:
                return _Search(before, found, firm=False)
    return _Search(before, [], firm=False)


def _firm(text: _Text, number: int, hunk: Hunk, search: _Search) -> _Firm:
    if not search.firm:
        return None
    try:
        return _distinct(text, number, hunk, search.candidates)
    except _Refused as refused:
        return refused


def _twins(hunks: list[Hunk], firm: list[_Firm]) -> dict[int, _Placement]:
    """Identical hunks matching as many places as there are of them: one place each, by hunk
    number (whichever goes where, the file comes out the same)."""
    groups: dict[tuple[object, ...], list[int]] = {}
    for number, (hunk, found) in enumerate(zip(hunks, firm, strict=True), 1):
        if isinstance(found, list) and len(found) > 1:
            lines = tuple((line.kind, line.text, line.no_newline) for line in hunk.lines)
            groups.setdefault((lines, *(start for start, _ in found)), []).append(number)
    placed: dict[int, _Placement] = {}
    for numbers in groups.values():
        found = firm[numbers[0] - 1]
        assert isinstance(found, list)
        if len(numbers) == len(found):
            for number, (_, placement) in zip(numbers, sorted(found, key=_by_start), strict=True):
                placed[number] = replace(placement, hunk=number)
    return placed


def _by_start(pair: tuple[int, _Placement]) -> int:
    return pair[0]


def _place(
    text: _Text, number: int, hunk: Hunk, search: _Search, found: _Firm, numbers: _LineNumbers
) -> _Placement:
    if isinstance(found, _Refused):
        raise found
    if not search.before:
        return _inserted(text, number, hunk, numbers)
    if found is None:
        return _loose(text, number, hunk, search, numbers)
    if len(found) == 1:
        return found[0][1]
    agreeing = [pair for pair in found if numbers.agree(hunk, pair[0])]
    if len(agreeing) == 1:
        return agreeing[0][1]
    return _choose(found, hunk, numbers.doubt)


def _inserted(text: _Text, number: int, hunk: Hunk, numbers: _LineNumbers) -> _Placement:
    """A hunk of added lines only: at the file's start if it is empty, else where the
    numbers say, if the file confirms them."""
    if not text.raw:
        return _Placement(number, 0, 0, _added_lines(text, hunk, _IDENTITY, at_end=True))
    unplaceable = "has no context or removed lines, so only its line numbers could place it"
    advice = "include two or three unchanged lines around the change"
    if hunk.old_start is None:
        raise _Refused(f"{unplaceable}, and it has none; {advice}")
    if numbers.doubt is not None:
        raise _Refused(f"{unplaceable}, and {numbers.doubt}; {advice}")
    if hunk.old_length != 0:
        raise _Refused(f"{unplaceable}, and they do not say -N,0 (insert after line N); {advice}")
    at = hunk.old_start
    if at > len(text.raw):
        raise _Refused(f"inserts after line {at}, but the file has {len(text.raw)} lines; {advice}")
    if at == 0 and not numbers.confirmed:
        raise _Refused(
            "adds lines at the top of an existing file the way a new file's patch does; "
            "if they belong there, include the file's first lines as unchanged context"
        )
    return _build(text, number, hunk, _Candidate(at, (), None))


def _loose(
    text: _Text, number: int, hunk: Hunk, search: _Search, numbers: _LineNumbers
) -> _Placement:
    if not search.candidates:
        why = _not_found(text, hunk, search.before)
        if hunk.headerless:
            why += "; without @@ lines its lines were read as one hunk: start each with @@"
        raise _Refused(why)
    agreeing = [c for c in search.candidates if numbers.agree(hunk, c.start)]
    if agreeing:
        found = _distinct(text, number, hunk, agreeing)
        if len(found) == 1:
            return found[0][1]
    where = ", ".join(str(c.start + 1) for c in sorted(search.candidates, key=lambda c: c.start))
    if hunk.old_start is None:
        why = "it has no line numbers"
    else:
        why = numbers.doubt or f"its line number {hunk.old_start} does not point there"
    raise _Refused(
        f"matches at line(s) {where} only with a line left out or extra, on too few "
        f"non-blank lines to be sure, and {why}; include more unchanged lines around the change"
    )


@dataclass(frozen=True)
class _LineNumbers:
    """Whether a file's @@ line numbers may place what content alone cannot."""

    doubt: str | None  # why not; None: they add up and content-placed hunks confirm them
    confirmed: int = 0  # hunks placed by content exactly where their numbers say

    def agree(self, hunk: Hunk, start: int) -> bool:
        return self.doubt is None and hunk.old_start is not None and _stated(hunk) == start


def _stated(hunk: Hunk) -> int:
    """The 0-based file line a hunk's old start names (for -N,0, the line after N)."""
    assert hunk.old_start is not None
    return hunk.old_start - 1 if hunk.count(" -") else hunk.old_start


def _judge_numbers(hunks: list[Hunk], firm: list[_Firm]) -> _LineNumbers:
    confirmed = 0
    for number, (hunk, found) in enumerate(zip(hunks, firm, strict=True), 1):
        if hunk.old_start is None or not isinstance(found, list) or len(found) != 1:
            continue
        start = found[0][0]
        if _stated(hunk) != start:
            return _LineNumbers(
                f"hunk {number}'s @@ line says line {hunk.old_start}, but its content is at "
                f"line {start + 1}"
            )
        confirmed += 1
    if not _numbers_add_up(hunks):
        return _LineNumbers("the @@ lines' old and new line numbers do not add up")
    return _LineNumbers(None, confirmed)


def _numbers_add_up(hunks: list[Hunk]) -> bool:
    """Every new start is its old start moved by the lines the hunks before it add."""
    numbered = [hunk for hunk in hunks if hunk.old_start is not None]
    shift = 0
    for hunk in sorted(numbered, key=_stated):
        old, new = hunk.count(" -"), hunk.count(" +")
        new_at = None if hunk.new_start is None else hunk.new_start - (1 if new else 0)
        if new_at is not None and new_at - _stated(hunk) != shift:
            return False
        shift += new - old
    return True


def _distinct(
    text: _Text, number: int, hunk: Hunk, found: list[_Candidate]
) -> list[tuple[int, _Placement]]:
    """One placement per distinct result: two matches that make the same file are one."""
    if len(found) == 1:
        return [(found[0].start, _build(text, number, hunk, found[0]))]
    by_result: dict[str, tuple[int, _Placement]] = {}
    for candidate in found:
        placement = _build(text, number, hunk, candidate)
        result = text.rebuild([placement])
        by_result.setdefault(result, (candidate.start, placement))
    return list(by_result.values())


def _candidates(
    text: _Text, hunk: Hunk, before: list[PatchLine], norm: _Norm, tolerant: bool, anchor: int
) -> list[_Candidate]:
    keys = [norm.key(line.text) for line in before]
    found: dict[tuple[int, _Pattern], _Candidate] = {}
    for pattern in _patterns(hunk, before) if tolerant else [tuple(range(len(before)))]:
        if tolerant and _anchor(before, pattern) < anchor:
            continue
        for start in _matches(text, norm, keys, pattern):
            indent = _indent_for(text, before, pattern, start) if norm.reindents else None
            if norm.reindents and indent is None:
                continue
            found.setdefault((start, pattern), _Candidate(start, pattern, indent))
    return list(found.values())


def _patterns(hunk: Hunk, before: list[PatchLine]) -> Iterator[_Pattern]:
    """Before-blocks with one context line the model left out, or one it added.

    A left-out line is kept; it may go only next to a context line and with nothing
    added at that point, where keeping it has one obvious place. An added one is dropped
    only when it is plainly noise (`_plain_extra`); any other may be a new line without its +.
    """
    whole = list(range(len(before)))
    gaps = _plain_gaps(hunk)
    for k in range(1, len(before)):
        if " " in (before[k - 1].kind, before[k].kind) and k in gaps:
            yield tuple(whole[:k]) + (None,) + tuple(whole[k:])
    for k in range(len(before)):
        if len(before) > 1 and _plain_extra(hunk, k):
            yield tuple(whole[:k] + whole[k + 1 :])


def _plain_extra(hunk: Hunk, k: int) -> bool:
    """Whether before-line k, if the file lacks it, is plainly noise: a context line that is
    blank or repeats the context line beside it, with no added or removed line beside it."""
    at = _body_index(hunk, k)
    line = hunk.lines[at]
    beside = hunk.lines[max(at - 1, 0) : at] + hunk.lines[at + 1 : at + 2]
    if line.kind != " " or any(other.kind != " " for other in beside):
        return False
    text = line.text.strip()
    return not text or any(other.text.strip() == text for other in beside)


def _body_index(hunk: Hunk, k: int) -> int:
    """Where before-line k (the k-th context or removed line) is among all the hunk's lines."""
    seen = -1
    for at, line in enumerate(hunk.lines):
        if line.kind != "+":
            seen += 1
            if seen == k:
                return at
    raise IndexError(k)


def _plain_gaps(hunk: Hunk) -> set[int]:
    """Before-line indexes k with no added line between before-lines k-1 and k."""
    gaps: set[int] = set()
    k, added_since = 0, False
    for line in hunk.lines:
        if line.kind == "+":
            added_since = True
            continue
        if k > 0 and not added_since:
            gaps.add(k)
        k, added_since = k + 1, False
    return gaps


def _anchor(before: list[PatchLine], pattern: _Pattern) -> int:
    return sum(1 for k in pattern if k is not None and before[k].text.strip())


def _matches(text: _Text, norm: _Norm, keys: list[str], pattern: _Pattern) -> list[int]:
    first = next(offset for offset, k in enumerate(pattern) if k is not None)
    first_key = keys[pattern[first] or 0]
    starts: list[int] = []
    for at in text.positions(norm, first_key):
        start = at - first
        if start < 0 or start + len(pattern) > len(text.bare):
            continue
        if all(
            k is None or norm.key(text.bare[start + offset]) == keys[k]
            for offset, k in enumerate(pattern)
        ):
            starts.append(start)
    return starts


def _choose(found: list[tuple[int, _Placement]], hunk: Hunk, doubt: str | None) -> _Placement:
    """One of several matches, if the hunk's line number is clearly nearest to it."""
    found.sort(key=lambda pair: pair[0])
    where = ", ".join(str(start + 1) for start, _ in found)
    if hunk.old_start is not None:
        hint = max(hunk.old_start - 1, 0)
        ranked = sorted(found, key=lambda pair: abs(pair[0] - hint))
        nearest, runner_up = (abs(start - hint) for start, _ in ranked[:2])
        if nearest <= _HINT_NEAR and runner_up >= _HINT_MARGIN * nearest + _HINT_NEAR:
            return ranked[0][1]
        trust = f" ({doubt})" if doubt else ""
        raise _Refused(
            f"matches at lines {where} and its line number {hunk.old_start} does not clearly "
            f"pick one{trust}; add context lines to make it unique"
        )
    raise _Refused(f"matches at lines {where}; add context lines to make it unique")


def _not_found(text: _Text, hunk: Hunk, before: list[PatchLine]) -> str:
    """Why a hunk matched nowhere: a context line the file lacks, which may be a new line
    without its +, or else the place most of its lines match."""
    unknown = _unknown_context(text, hunk, before)
    if unknown is not None:
        return unknown
    stated_start = hunk.old_start
    advice = "read the file and make the patch again from its current text"
    keys = [line.text.strip() for line in before]
    votes: dict[int, int] = {}
    for k, key in enumerate(keys):
        if key:  # blank lines match everywhere, so they do not point anywhere
            for at in text.positions(_NORMS[2], key):
                votes[at - k] = votes.get(at - k, 0) + 1
    if not votes:
        return (
            f"does not match the file: none of its lines (starting {before[0].text!r}) were "
            f"found; {advice}"
        )
    hint = max((stated_start or 1) - 1, 0)
    start = max(votes, key=lambda at: (votes[at], -abs(at - hint), -at))
    differing = [
        k
        for k, key in enumerate(keys)
        if not 0 <= start + k < len(text.bare) or text.bare[start + k].strip() != key
    ]
    first = differing[0]
    where = start + first
    if 0 <= where < len(text.bare):
        differs = f"the file has {text.bare[where]!r} (line {where + 1})"
    else:
        differs = "the file " + ("ends" if where >= 0 else "starts") + " there"
    return (
        f"does not match the file: it comes closest at line {max(start, 0) + 1}, where "
        f"{len(keys) - len(differing)} of its {len(keys)} lines match, but the hunk has "
        f"{before[first].text!r} where {differs}; {advice}"
    )


def _unknown_context(text: _Text, hunk: Hunk, before: list[PatchLine]) -> str | None:
    """The message for a hunk that matches but for one non-blank context line."""
    keys = [line.text.strip() for line in before]
    whole = list(range(len(before)))
    for k, line in enumerate(before):
        if line.kind != " " or not keys[k] or len(before) < 2:
            continue
        pattern: _Pattern = tuple(whole[:k] + whole[k + 1 :])
        if _anchor(before, pattern) == 0:
            continue
        starts = _matches(text, _NORMS[2], keys, pattern)
        if starts:
            return (
                f"has the unchanged line {line.text!r}, but the file does not have it there "
                f"(the rest matches at line {starts[0] + 1}); if it is a new line, prefix "
                "it with +; if it is unchanged, copy it from the file"
            )
    return None


# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class _Indent:
    """How the model's indentation maps onto the file's, learned from the matched lines."""

    known: dict[str, str]
    add: str | None = None  # the file's indent is the model's plus this prefix
    remove: str | None = None  # the model's indent is the file's plus this prefix

    @property
    def identity(self) -> bool:
        return self.add == "" and all(ours == theirs for ours, theirs in self.known.items())

    def apply(self, line: str) -> str | None:
        """The line in the file's indentation; a whitespace-only one as it is, when the
        mapping is the identity, else None (its whitespace cannot be mapped)."""
        if not line.strip():
            return line if self.identity or not line else None
        body = line.lstrip()
        indent = line[: len(line) - len(body)]
        if indent in self.known:
            return self.known[indent] + body
        if self.add is not None:
            return self.add + indent + body
        if self.remove is not None and indent.startswith(self.remove):
            return indent[len(self.remove) :] + body
        return None


_IDENTITY = _Indent({}, add="")


def _indent_for(
    text: _Text, before: list[PatchLine], pattern: _Pattern, start: int
) -> _Indent | None:
    """A consistent indentation mapping for this match, or None when structure differs."""
    known: dict[str, str] = {}
    for offset, k in enumerate(pattern):
        if k is None or not before[k].text.strip():
            continue
        ours, theirs = _leading(before[k].text), _leading(text.bare[start + offset])
        if known.setdefault(ours, theirs) != theirs:
            return None
    if len(set(known.values())) != len(known):
        return None
    pairs = list(known.items())
    add = _common_delta([(theirs, ours) for ours, theirs in pairs])
    remove = _common_delta(pairs)
    return _Indent(known, add=add, remove=remove)


def _common_delta(pairs: list[tuple[str, str]]) -> str | None:
    """The prefix `p` with long == p + short for every (long, short) pair, if there is one."""
    delta: str | None = None
    for long, short in pairs:
        if not long.endswith(short):
            return None
        prefix = long[: len(long) - len(short)]
        if delta is None:
            delta = prefix
        elif prefix != delta:
            return None
    return delta


def _leading(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _build(text: _Text, number: int, hunk: Hunk, candidate: _Candidate) -> _Placement:
    file_of: dict[int, int] = {}
    skipped_before: dict[int, int] = {}  # before-line k -> file line the model left out
    for offset, k in enumerate(candidate.pattern):
        if k is None:
            following = candidate.pattern[offset + 1]
            skipped_before[following or 0] = candidate.start + offset
        else:
            file_of[k] = candidate.start + offset
    end = candidate.start + len(candidate.pattern)
    indent = candidate.indent or _IDENTITY
    at_end = end == len(text.raw)
    out: list[str] = []
    k = 0
    for line in hunk.lines:
        if line.kind == "+":
            out.append(_added(text, hunk, line, indent, at_end))
            continue
        if k in skipped_before:
            out.append(text.raw[skipped_before[k]])
        if line.kind == " " and k in file_of:
            out.append(text.raw[file_of[k]])
        k += 1
    _keep_final_newline_state(text, hunk, out, at_end)
    return _Placement(number, candidate.start, end, out)


def _added(text: _Text, hunk: Hunk, line: PatchLine, indent: _Indent, at_end: bool) -> str:
    body = indent.apply(line.text)
    if body is None and not line.text.strip():
        raise _Refused(
            f"matches only with different indentation, and its added line {line.text!r} "
            "holds only whitespace, which cannot be mapped onto the file's indentation; "
            "copy the file's indentation exactly"
        )
    if body is None:
        raise _Refused(
            f"matches only with different indentation, and the added line {line.text!r} "
            "has an indentation that cannot be mapped onto the file's; copy the file's "
            "indentation exactly"
        )
    return body + ("" if line.no_newline else text.eol)


def _added_lines(text: _Text, hunk: Hunk, indent: _Indent, at_end: bool) -> list[str]:
    return [_added(text, hunk, line, indent, at_end) for line in hunk.lines]


def _keep_final_newline_state(text: _Text, hunk: Hunk, out: list[str], at_end: bool) -> None:
    """A hunk at the end of a file without a final newline, and no `\\` marker anywhere:

    the model left the markers out, so the file keeps having no final newline.
    """
    if at_end and not text.final_newline and not hunk.has_markers and out:
        out[-1] = out[-1].removesuffix("\n").removesuffix("\r")
