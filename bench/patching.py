"""Patch application on model-style diffs of real commits: Cairn, git apply, GNU patch.

Usage: uv run python bench/patching.py [[NAME=]REPO ...] [--commits N] [--seed S]
For each git repository (default: this one; a bare clone will do), builds (before, after)
file pairs from the last N commits of its HEAD, renders each as a unified diff, perturbs it
the ways models do, and counts per perturbation kind and pooled how often each applier gives
the exact result, a wrong result (claimed success, wrong content) or refuses. Kinds whose
right answer is a refusal are shown apart, not pooled. Prints a table per repository and
ends with one key=value line (keys prefixed with the repository's name when there are several).
"""

from __future__ import annotations

import argparse
import difflib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cairn_client.patching import PatchError, apply_patch

MAX_FILE_BYTES = 100_000
MAX_CHANGED_LINES = 300
MAX_FILES_PER_COMMIT = 6
TOOL_TIMEOUT_S = 10


@dataclass(frozen=True)
class FileCase:
    path: str
    before: str | None
    after: str | None


@dataclass
class Tally:
    exact: int = 0
    wrong: int = 0
    refused: int = 0

    @property
    def total(self) -> int:
        return self.exact + self.wrong + self.refused

    def rate(self, name: str) -> float:
        return 100.0 * getattr(self, name) / self.total if self.total else 0.0


@dataclass
class Results:
    kinds: dict[str, dict[str, Tally]] = field(default_factory=dict)

    def add(self, kind: str, tool: str, outcome: str) -> None:
        tally = self.kinds.setdefault(kind, {}).setdefault(tool, Tally())
        setattr(tally, outcome, getattr(tally, outcome) + 1)


# --------------------------------------------------------------------------- corpus


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def file_at(repo: Path, commit: str, path: str) -> str | None:
    done = subprocess.run(["git", "-C", str(repo), "show", f"{commit}:{path}"], capture_output=True)
    if done.returncode != 0:
        return None
    data = done.stdout
    if b"\0" in data or len(data) > MAX_FILE_BYTES:
        raise ValueError("binary or huge")
    return data.decode("utf-8")


def corpus(repo: Path, commits: int) -> list[list[FileCase]]:
    """Per commit, its text file changes (added, deleted or modified; no renames)."""
    log = git(repo, "log", "--no-merges", f"-{commits}", "--format=%H %P").splitlines()
    cases: list[list[FileCase]] = []
    for entry in log:
        commit, *parents = entry.split()
        if not parents:
            continue
        names = git(repo, "diff", "--no-renames", "--name-only", parents[0], commit).split()
        changes: list[FileCase] = []
        for path in names:
            try:
                before, after = file_at(repo, parents[0], path), file_at(repo, commit, path)
            except (ValueError, UnicodeDecodeError):
                continue
            if before == after or _changed_lines(before, after) > MAX_CHANGED_LINES:
                continue
            changes.append(FileCase(path, before, after))
        if changes:
            cases.append(changes)
    return cases


def _changed_lines(before: str | None, after: str | None) -> int:
    diff = difflib.unified_diff(_lines(before), _lines(after), n=0)
    return sum(1 for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---"))


# --------------------------------------------------------------------------- rendering

# A rendered file diff: its two header lines and its hunks, each a header and body lines.
Hunk = tuple[str, list[str]]


@dataclass
class FileDiff:
    old: str
    new: str
    hunks: list[Hunk]

    def text(self) -> str:
        out = [f"--- {self.old}\n", f"+++ {self.new}\n"]
        for header, body in self.hunks:
            if header:  # an empty header: the model left the @@ line out
                out.append(header + "\n")
            out.extend(line + "\n" for line in body)
        return "".join(out)


def _lines(text: str | None) -> list[str]:
    if not text:
        return []
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def render(case: FileCase, context: int = 3) -> FileDiff:
    old = f"a/{case.path}" if case.before is not None else "/dev/null"
    new = f"b/{case.path}" if case.after is not None else "/dev/null"
    raw = list(
        difflib.unified_diff(
            _lines(case.before), _lines(case.after), "a", "b", n=context, lineterm="\n"
        )
    )[2:]
    hunks: list[Hunk] = []
    for line in raw:
        if line.startswith("@@"):
            hunks.append((line.rstrip("\n"), []))
            continue
        body = hunks[-1][1]
        if line.endswith("\n"):
            body.append(line[:-1])
        else:
            body.extend([line, "\\ No newline at end of file"])
    return FileDiff(old, new, hunks)


def recount(hunks: list[Hunk]) -> list[Hunk]:
    """Headers with counts matching their bodies (the kinds not about counts keep them right)."""
    out: list[Hunk] = []
    for header, body in hunks:
        match = re.match(r"@@ -(\d+)(?:,\d+)? \+(\d+)(?:,\d+)? @@", header)
        if match is None:
            out.append((header, body))
            continue
        old = sum(1 for line in body if line[:1] in (" ", "-"))
        new = sum(1 for line in body if line[:1] in (" ", "+"))
        out.append((f"@@ -{match[1]},{old} +{match[2]},{new} @@", body))
    return out


# --------------------------------------------------------------------------- perturbations

Perturb = Callable[[list[FileDiff], random.Random], str | None]


def joined(diffs: list[FileDiff]) -> str:
    return "".join(diff.text() for diff in diffs)


def clean(diffs: list[FileDiff], rng: random.Random) -> str | None:
    return joined(diffs)


def wrong_line_numbers(diffs: list[FileDiff], rng: random.Random) -> str | None:
    for diff in diffs:
        hunks: list[Hunk] = []
        for header, body in diff.hunks:
            shift = rng.choice([-1, 1]) * rng.randint(3, 30)

            def moved(match: re.Match[str], by: int = shift) -> str:
                return f"{match[1]}{max(1, int(match[2]) + by)}"

            hunks.append((re.sub(r"([-+])(\d+)", moved, header), body))
        diff.hunks = hunks
    return joined(diffs)


def wrong_counts(diffs: list[FileDiff], rng: random.Random) -> str | None:
    for diff in diffs:
        diff.hunks = [
            (re.sub(r",(\d+)", lambda m: f",{int(m[1]) + rng.randint(1, 5)}", header), body)
            for header, body in diff.hunks
        ]
    return joined(diffs)


def missing_line_numbers(diffs: list[FileDiff], rng: random.Random) -> str | None:
    for diff in diffs:
        diff.hunks = [(rng.choice(["@@ @@", "@@ ... @@"]), body) for _, body in diff.hunks]
    return joined(diffs)


def no_hunk_headers(diffs: list[FileDiff], rng: random.Random) -> str | None:
    """No @@ lines at all: a file's hunks run on into each other."""
    for diff in diffs:
        diff.hunks = [("", body) for _, body in diff.hunks]
    return joined(diffs)


def no_prefixes(diffs: list[FileDiff], rng: random.Random) -> str | None:
    for diff in diffs:
        diff.old = diff.old.removeprefix("a/")
        diff.new = diff.new.removeprefix("b/")
    return joined(diffs)


def _context_positions(body: list[str], interior: bool) -> list[int]:
    """Context lines, interior ones only (a neighbour context line on each side) if asked."""
    positions = [at for at, line in enumerate(body) if line.startswith(" ") and line.strip()]
    if not interior:
        return positions
    return [
        at
        for at in positions
        if 0 < at < len(body) - 1 and body[at - 1][:1] == " " and body[at + 1][:1] == " "
    ]


def dropped_context(diffs: list[FileDiff], rng: random.Random) -> str | None:
    return _edit_one_context(diffs, rng, drop=True)


def extra_context(diffs: list[FileDiff], rng: random.Random) -> str | None:
    return _edit_one_context(diffs, rng, drop=False)


def _edit_one_context(diffs: list[FileDiff], rng: random.Random, drop: bool) -> str | None:
    choices = [
        (diff, index, at)
        for diff in diffs
        for index, (_, body) in enumerate(diff.hunks)
        for at in _context_positions(body, interior=True)
    ]
    if not choices:
        return None
    diff, index, at = rng.choice(choices)
    header, body = diff.hunks[index]
    body = body[:at] + body[at + 1 :] if drop else body[: at + 1] + [body[at]] + body[at + 1 :]
    diff.hunks[index] = (header, body)
    diff.hunks = recount(diff.hunks)
    return joined(diffs)


def whitespace_drift(diffs: list[FileDiff], rng: random.Random) -> str | None:
    """Trailing whitespace changed on copied lines; tabs written as four spaces throughout."""
    changed = False
    for diff in diffs:
        hunks: list[Hunk] = []
        for header, body in diff.hunks:
            if not _has_before(body):  # a new file has nothing to drift from
                hunks.append((header, body))
                continue
            out: list[str] = []
            for line in body:
                kind, rest = line[:1], line[1:]
                if kind in (" ", "-") and rest.strip() and rng.random() < 0.5:
                    rest = rest.rstrip() if rest != rest.rstrip() else rest + rng.choice(" \t")
                    changed = True
                if kind in (" ", "-", "+") and "\t" in rest[: len(rest) - len(rest.lstrip())]:
                    body_text = rest.lstrip()
                    rest = rest[: len(rest) - len(body_text)].replace("\t", "    ") + body_text
                    changed = True
                out.append(kind + rest)
            hunks.append((header, out))
        diff.hunks = hunks
    return joined(diffs) if changed else None


def _has_before(body: list[str]) -> bool:
    return any(line[:1] in (" ", "-") for line in body)


def indentation_drift(diffs: list[FileDiff], rng: random.Random) -> str | None:
    """Every line of a hunk one level (four spaces) too shallow, or too deep."""
    changed = False
    for diff in diffs:
        hunks: list[Hunk] = []
        for header, body in diff.hunks:
            if not _has_before(body):
                hunks.append((header, body))
                continue
            text = [line[1:] for line in body if line[:1] in " -+" and line[1:].strip()]
            shallow = bool(text) and all(line.startswith("    ") for line in text)
            out = []
            for line in body:
                kind, rest = line[:1], line[1:]
                if kind in " -+" and rest.strip():
                    rest = rest[4:] if shallow else "    " + rest
                out.append(kind + rest)
            hunks.append((header, out))
            changed = changed or bool(text)
        diff.hunks = hunks
    return joined(diffs) if changed else None


def no_final_newline(diffs: list[FileDiff], rng: random.Random) -> str | None:
    return joined(diffs).removesuffix("\n")


def hunks_out_of_order(diffs: list[FileDiff], rng: random.Random) -> str | None:
    if all(len(diff.hunks) < 2 for diff in diffs):
        return None
    for diff in diffs:
        diff.hunks = list(reversed(diff.hunks))
    return joined(diffs)


def unmarked_added_line(diffs: list[FileDiff], rng: random.Random) -> str | None:
    """One added line of a changed file without its +: the right answer is a refusal.

    Lines equal to a line beside them are left alone: without the + they read as a context
    line written twice, which `extra_context` counts as right to tolerate.
    """
    choices = [
        (diff, index, at)
        for diff in diffs
        for index, (_, body) in enumerate(diff.hunks)
        if _has_before(body)
        for at, line in enumerate(body)
        if line.startswith("+") and line[1:].strip() and not _beside(body, at, line[1:])
    ]
    if not choices:
        return None
    diff, index, at = rng.choice(choices)
    header, body = diff.hunks[index]
    diff.hunks[index] = (header, body[:at] + [body[at][1:]] + body[at + 1 :])
    return joined(diffs)


def _beside(body: list[str], at: int, text: str) -> bool:
    return any(0 <= k < len(body) and body[k][1:] == text for k in (at - 1, at + 1))


KINDS: dict[str, Perturb] = {
    "clean": clean,
    "wrong_line_numbers": wrong_line_numbers,
    "wrong_counts": wrong_counts,
    "missing_line_numbers": missing_line_numbers,
    "no_hunk_headers": no_hunk_headers,
    "zero_context": clean,
    "no_prefixes": no_prefixes,
    "dropped_context": dropped_context,
    "extra_context": extra_context,
    "whitespace_drift": whitespace_drift,
    "indentation_drift": indentation_drift,
    "no_final_newline": no_final_newline,
    "hunks_out_of_order": hunks_out_of_order,
}
# Kinds rendered with other than three lines of context (`git diff -U0` for zero_context).
CONTEXT_LINES = {"zero_context": 0}
# Kinds whose right answer is a refusal: reported apart, not pooled.
MUST_REFUSE: dict[str, Perturb] = {"unmarked_added_line": unmarked_added_line}
MULTI_FILE_KIND = "several_files"


# --------------------------------------------------------------------------- appliers


def expected(cases: list[FileCase]) -> dict[str, str | None]:
    return {case.path: case.after for case in cases}


def run_cairn(patch: str, cases: list[FileCase], workdir: Path) -> str:
    files = {case.path: case.before for case in cases if case.before is not None}
    try:
        result = apply_patch(patch, files)
    except PatchError:
        return "refused"
    merged: dict[str, str | None] = {case.path: case.before for case in cases}
    merged.update(result)
    return "exact" if merged == expected(cases) else "wrong"


def run_external(command: list[str], patch: str, cases: list[FileCase], workdir: Path) -> str:
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    for case in cases:
        if case.before is not None:
            target = workdir / case.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(case.before.encode("utf-8"))
    (workdir.parent / "change.diff").write_bytes(patch.encode("utf-8"))
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(workdir.parent)}
    try:
        done = subprocess.run(
            [*command, str(workdir.parent / "change.diff")],
            cwd=workdir,
            capture_output=True,
            timeout=TOOL_TIMEOUT_S,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return "refused"
    if done.returncode != 0:
        return "refused"
    return "exact" if _read_back(workdir, cases) == expected(cases) else "wrong"


def _read_back(workdir: Path, cases: list[FileCase]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for case in cases:
        path = workdir / case.path
        try:
            out[case.path] = path.read_bytes().decode("utf-8") if path.exists() else None
        except UnicodeDecodeError:
            out[case.path] = "\0undecodable"
    return out


GIT_APPLY = ["git", "apply", "--recount", "--whitespace=nowarn"]
GNU_PATCH = ["patch", "-p1", "--fuzz=3", "--batch", "--forward", "-s", "-E", "-r", "-"]
GNU_PATCH_TAIL = ["--no-backup-if-mismatch", "-i"]


def appliers() -> dict[str, Callable[[str, list[FileCase], Path], str]]:
    tools: dict[str, Callable[[str, list[FileCase], Path], str]] = {"cairn": run_cairn}
    tools["git_apply"] = lambda p, c, w: run_external(GIT_APPLY, p, c, w)
    if shutil.which("patch"):
        tools["gnu_patch"] = lambda p, c, w: run_external(GNU_PATCH + GNU_PATCH_TAIL, p, c, w)
    else:
        print("GNU patch is not installed: its column is skipped", file=sys.stderr)
    return tools


# --------------------------------------------------------------------------- running


def run(commits: list[list[FileCase]], seed: int, workroot: Path) -> tuple[Results, Results]:
    """Pooled kinds, and the must-refuse kinds apart."""
    results, refusals = Results(), Results()
    tools = appliers()
    for number, cases in enumerate(commits):
        units = [[case] for case in cases[:MAX_FILES_PER_COMMIT]]
        for kinds, into in ((KINDS, results), (MUST_REFUSE, refusals)):
            for kind, perturb in kinds.items():
                for unit_index, unit in enumerate(units):
                    rng = random.Random(f"{seed}-{number}-{unit_index}-{kind}")
                    context = CONTEXT_LINES.get(kind, 3)
                    patch = perturb([render(case, context) for case in unit], rng)
                    if patch is not None:
                        _score(into, kind, tools, patch, unit, workroot)
        if len(units) > 1:
            multi = [case for unit in units for case in unit]
            patch = joined([render(case) for case in multi])
            _score(results, MULTI_FILE_KIND, tools, patch, multi, workroot)
    return results, refusals


def _score(
    results: Results,
    kind: str,
    tools: dict[str, Callable[[str, list[FileCase], Path], str]],
    patch: str,
    cases: list[FileCase],
    workroot: Path,
) -> None:
    for name, tool in tools.items():
        results.add(kind, name, tool(patch, cases, workroot / "tree"))


OUTCOMES = ("exact", "wrong", "refused")
HEADER_WIDTH = 30


def report(results: Results, refusals: Results, tools: list[str]) -> tuple[str, dict[str, str]]:
    """One repository's table, and its figures for the key=value line."""
    rows = [
        f"{'kind':<22}{'cases':>6}  " + "  ".join(f"{tool:>24}" for tool in tools),
        f"{'':<{HEADER_WIDTH}}" + "  ".join(f"{'exact/wrong/refused %':>24}" for _ in tools),
    ]
    rows += [_row(kind, by_tool, tools) for kind, by_tool in results.kinds.items()]
    pooled = pool(results, tools)
    rows.append(_row("pooled", pooled, tools))
    if refusals.kinds:
        rows.append("must refuse (not pooled: the right answer is a refusal)")
        rows += [_row(kind, by_tool, tools) for kind, by_tool in refusals.kinds.items()]
    figures = {"cases": str(pooled[tools[0]].total)}
    for tool in tools:
        for name in OUTCOMES:
            figures[f"{tool}_{name}_pct"] = f"{pooled[tool].rate(name):.1f}"
    worst = min((by_tool["cairn"].rate("exact"), kind) for kind, by_tool in results.kinds.items())
    figures["cairn_worst_kind"] = worst[1]
    figures["cairn_worst_kind_exact_pct"] = f"{worst[0]:.1f}"
    for kind, by_tool in refusals.kinds.items():
        figures[f"cairn_{kind}_wrong_pct"] = f"{by_tool['cairn'].rate('wrong'):.1f}"
    return "\n".join(rows), figures


def pool(results: Results, tools: list[str]) -> dict[str, Tally]:
    pooled = {tool: Tally() for tool in tools}
    for by_tool in results.kinds.values():
        for tool in tools:
            tally = by_tool.get(tool, Tally())
            for name in OUTCOMES:
                setattr(pooled[tool], name, getattr(pooled[tool], name) + getattr(tally, name))
    return pooled


def _row(label: str, by_tool: dict[str, Tally], tools: list[str]) -> str:
    cells = "  ".join(_cell(by_tool.get(tool, Tally())) for tool in tools)
    return f"{label:<22}{by_tool[tools[0]].total:>6}  {cells}"


def _cell(tally: Tally) -> str:
    text = f"{tally.rate('exact'):5.1f}/{tally.rate('wrong'):4.1f}/{tally.rate('refused'):5.1f}"
    return f"{text:>24}"


def named(spec: str) -> tuple[str, Path]:
    """NAME=PATH, or PATH named after its folder (without a .git suffix)."""
    name, sep, path = spec.partition("=")
    if sep and name and "/" not in name:
        return name, Path(path)
    return Path(spec).resolve().name.removesuffix(".git"), Path(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    this_repository = str(Path(__file__).resolve().parents[1])
    parser.add_argument("repos", nargs="*", metavar="[NAME=]REPO", default=[this_repository])
    parser.add_argument("--commits", type=int, default=150)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    started = time.monotonic()
    repos = [named(spec) for spec in args.repos]
    if len({name for name, _ in repos}) < len(repos):
        parser.error("two repositories have the same name; name them with NAME=REPO")
    tools = ["cairn", "git_apply"] + (["gnu_patch"] if shutil.which("patch") else [])
    print("tools: cairn apply_patch; git apply --recount; patch -p1 --fuzz=3 (GNU)")
    figures: dict[str, str] = {}
    summary: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cairn-patch-bench-") as workroot:
        for name, path in repos:
            commits = corpus(path, args.commits)
            files = sum(len(cases) for cases in commits)
            head = git(path, "rev-parse", "HEAD").strip()
            print(f"\n== {name}: {path} at {head}")
            print(f"corpus: {len(commits)} commits, {files} file changes")
            results, refusals = run(commits, args.seed, Path(workroot))
            table, own = report(results, refusals, tools)
            print(table)
            summary.append(_row(name, pool(results, tools), tools))
            prefix = f"{name}_" if len(repos) > 1 else ""
            figures.update({prefix + key: value for key, value in own.items()})
    if len(repos) > 1:
        print(f"\n{'pooled per repository':<{HEADER_WIDTH}}" + "  ".join(f"{t:>24}" for t in tools))
        print("\n".join(summary))
    line = " ".join(f"{key}={value}" for key, value in figures.items())
    print(f"{line} seconds={time.monotonic() - started:.1f}")


if __name__ == "__main__":
    main()
