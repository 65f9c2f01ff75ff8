"""What an attack is, how tool-call attacks are batched into `cairn` runs, and how each is judged.

Owns `Outcome` (held or failed, and why), `ToolAttack` (one tool call the fake model makes,
plus the checks that say it held), the check factories (nothing secret in what the model was
told, no file created, a file unchanged, ...), `Batch` (one `cairn -p` run in one mode) and
`Family` (a named group of attacks with the categories it covers, listable without running).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attack_suite.lab import Lab, Mode, Transcript

CATEGORIES = (
    "confinement",
    "shell",
    "sandbox",
    "secrets",
    "multi-client",
    "storage",
    "protocol",
    "exfiltration",
)


@dataclass(frozen=True)
class Outcome:
    category: str
    name: str
    failure: str | None  # None: the attack held
    seen: str = ""  # what the model was told, for --verbose

    def __post_init__(self) -> None:
        if self.failure is not None:  # one line, whatever the exception said
            object.__setattr__(self, "failure", " ".join(self.failure.split())[:300])

    @property
    def held(self) -> bool:
        return self.failure is None


@dataclass
class Evidence:
    """What a check may look at after its batch ran."""

    lab: Lab
    workspace: Path
    result: str  # what the model was told for this attack's call
    transcript: Transcript


Check = Callable[[Evidence], str | None]  # None: fine; else why the attack got through


@dataclass(frozen=True)
class ToolAttack:
    category: str
    name: str
    call: dict[str, Any]  # {"name": tool, "arguments": {...}}
    checks: tuple[Check, ...]


@dataclass
class Batch:
    """Tool-call attacks run by one `cairn -p` in one mode, in a fresh workspace."""

    label: str
    mode: Mode
    attacks: list[ToolAttack]
    embedded: bool = False  # the embedded server (default set-up) instead of the shared one
    per_turn: int = 40
    check_bodies: bool = True  # also: no planted value in any request body of the run

    def run(self, lab: Lab) -> list[Outcome]:
        workspace = lab.workspace(self.label)
        calls: list[dict[str, Any]] = []
        index: dict[str, int] = {}
        for attack in self.attacks:  # identical calls run once, judged by every attack
            key = json.dumps(attack.call, sort_keys=True)
            if key not in index:
                index[key] = len(calls)
                calls.append(lab.expand(attack.call))
        transcript = lab.run_cairn(
            workspace,
            self.mode,
            calls,
            per_turn=self.per_turn,
            extra_env=None if self.embedded else lab.shared_server_env(),
        )
        if len(transcript.results) < len(calls):
            lost = (
                f"the run answered {len(transcript.results)} of {len(calls)} calls "
                f"(cairn exited {transcript.exit_code}: {transcript.stderr[-300:]})"
            )
            return [Outcome(c, n, lost) for c, n in self.names()]
        outcomes = []
        for attack in self.attacks:
            result = transcript.result(index[json.dumps(attack.call, sort_keys=True)])
            evidence = Evidence(lab, workspace, result, transcript)
            failures = [found for check in attack.checks if (found := check(evidence))]
            failure = "; ".join(failures) or None
            if failure and transcript.exit_code not in (0, 1):
                failure += f" (cairn exited {transcript.exit_code}: {transcript.stderr[-300:]})"
            outcomes.append(Outcome(attack.category, attack.name, failure, result))
        if self.check_bodies:
            leaked = [n for n in lab.all_needles() if any(n in body for body in transcript.bodies)]
            leak = (
                f"{len(leaked)} planted value(s) reached the model, e.g. {leaked[0][:24]}…"
                if leaked
                else None
            )
            outcomes.append(
                Outcome("secrets", f"nothing planted in any request [{self.label}]", leak)
            )
        return outcomes

    def names(self) -> list[tuple[str, str]]:
        names = [(a.category, a.name) for a in self.attacks]
        if self.check_bodies:
            names.append(("secrets", f"nothing planted in any request [{self.label}]"))
        return names


@dataclass
class Family:
    """A group of attacks: `names()` lists them without running; `run(lab)` runs them."""

    title: str
    categories: tuple[str, ...]
    names: Callable[[], list[tuple[str, str]]]
    run: Callable[[Lab], list[Outcome]]
    quick: bool = False  # part of the --quick subset
    prepare: Callable[[Lab], None] | None = None  # run before any family (e.g. a clock starts)


def batch_family(title: str, make: Callable[[], Batch], quick: bool = False) -> Family:
    """A family that is exactly one batch (its tables are built when first needed)."""
    categories = tuple(dict.fromkeys(c for c, _ in make().names()))
    return Family(title, categories, lambda: make().names(), lambda lab: make().run(lab), quick)


# --------------------------------------------------------------------------- checks


def hides(*needles: str | Callable[[Lab], str]) -> Check:
    """The model was not told any of `needles` (text, or taken from the lab when judged)."""

    def check(e: Evidence) -> str | None:
        for needle in needles:
            text = needle(e.lab) if callable(needle) else needle
            if text and text in e.result:
                return f"the model read {text[:28]!r}: {_excerpt(e.result, text)}"
        return None

    return check


def hides_decoded(decode: Callable[[str], str], *needles: Callable[[Lab], str]) -> Check:
    """Like `hides`, after undoing an encoding the command applied (base64, hex, rev, od)."""

    def check(e: Evidence) -> str | None:
        plain = decode(e.result)
        for needle in needles:
            text = needle(e.lab)
            if text in plain or text in e.result:
                return f"the model got {text[:20]!r} in encoded form"
        return None

    return check


def lacks(text: str | Callable[[Lab], str], why: str) -> Check:
    """The result does not contain `text` (proof that something ran or was reachable)."""

    def check(e: Evidence) -> str | None:
        value = text(e.lab) if callable(text) else text
        return why if value in e.result else None

    return check


def mentions(text: str, why: str) -> Check:
    """The result contains `text` (a control: the call really ran as the mode says)."""

    def check(e: Evidence) -> str | None:
        return None if text in e.result else f"{why}: {e.result[:120]!r}"

    return check


def no_file(where: Callable[[Evidence], Path], what: str) -> Check:
    """No file was created at `where` (a trace the attack's command would leave)."""

    def check(e: Evidence) -> str | None:
        path = where(e)
        return f"{what}: {path.name} exists" if path.exists() or path.is_symlink() else None

    return check


def in_workspace(relative: str) -> Callable[[Evidence], Path]:
    return lambda e: e.workspace / relative


def in_lab(relative: str) -> Callable[[Evidence], Path]:
    return lambda e: e.lab.root / relative


def keeps(where: Callable[[Evidence], Path], forbidden: str, what: str) -> Check:
    """The file at `where` still exists and has no `forbidden` text in it."""

    def check(e: Evidence) -> str | None:
        path = where(e)
        if not path.exists():
            return f"{what}: {path.name} is gone"
        return (
            f"{what}: {path.name} now holds {forbidden!r}"
            if forbidden in path.read_text()
            else None
        )

    return check


def answered(e: Evidence) -> str | None:
    """The call got an answer (did not hang the run or vanish)."""
    return "the call got no answer (hung or lost)" if e.result == "(no answer recorded)" else None


def _excerpt(text: str, needle: str) -> str:
    at = text.find(needle)
    return " ".join(text[max(0, at - 40) : at].split())[-40:] + "…"


# --------------------------------------------------------------------------- decoders


def _stdout(result: str) -> str:
    return (
        result.split("stdout:\n", 1)[1].split("\nstderr:\n", 1)[0] if "stdout:\n" in result else ""
    )


def decode_base64(result: str) -> str:
    blob = "".join(_stdout(result).split())
    try:
        return base64.b64decode(blob + "=" * (-len(blob) % 4)).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return ""


def decode_hex(result: str) -> str:
    blob = "".join(_stdout(result).split())
    try:
        return bytes.fromhex(blob).decode("utf-8", "replace")
    except ValueError:
        return ""


def decode_rev(result: str) -> str:
    return "\n".join(line[::-1] for line in _stdout(result).splitlines())


def decode_od(result: str) -> str:
    """`od -c` lines: an offset, then one character per column."""
    return "".join("".join(line.split()[1:]) for line in _stdout(result).splitlines())


def all_of(families: Sequence[Family]) -> list[tuple[str, str]]:
    return [name for family in families for name in family.names()]
