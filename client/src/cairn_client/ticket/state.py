"""Where a ticket run stands, kept on disk so `cairn ticket --resume` can continue it.

Owns the state file in the repository's git folder (shared by its worktrees, never in
a working tree) and finding the ticket to resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from cairn_client.ticket.sources import Ticket

Phase = Literal["plan", "implement", "done"]
STATE_FOLDER = ("cairn", "tickets")


class StateError(Exception):
    """No ticket to resume, or its state file cannot be read; the message says what to do."""


@dataclass
class TicketState:
    """One ticket's progress: the ticket, its branch, its conversation and the phase."""

    ticket: Ticket
    branch: str
    workdir: str
    base_commit: str
    base_branch: str
    worktree: bool
    phase: Phase = "plan"
    conversation_id: str | None = None
    proposed_plan: str | None = None  # the agent's latest plan, waiting for the review
    plan: str | None = None  # the approved plan
    implement_started: bool = False
    # The flags it was started with, which a resume keeps unless it gives its own.
    approve: str | None = None
    patch_out: str | None = None
    pull_request: bool = False
    run_ids: list[str] = field(default_factory=list)
    commit: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TicketState:
        return cls(**{**data, "ticket": Ticket(**data["ticket"])})


def state_folder(repo: Path) -> Path:
    """The repository's common git folder (one for all its worktrees) / cairn / tickets."""
    finished = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    if finished.returncode != 0:
        raise StateError(f"{repo} is not in a git repository")
    return Path(finished.stdout.strip()).joinpath(*STATE_FOLDER)


def save_state(repo: Path, state: TicketState) -> Path:
    """Write atomically, so a crash leaves the previous state, never half of one."""
    folder = state_folder(repo)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{state.ticket.branch_slug}.json"
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".state-")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(state.to_json(), out, indent=2)
    os.replace(temporary, target)
    return target


def remove_state(repo: Path, slug: str) -> None:
    (state_folder(repo) / f"{slug}.json").unlink(missing_ok=True)


def load_state(repo: Path, slug: str | None = None) -> TicketState:
    """The ticket `slug`, or the most recently touched one that is not done."""
    folder = state_folder(repo)
    files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    if slug is not None:
        files = [p for p in files if p.stem == slug.removeprefix("cairn/")]
    for path in files:
        state = _read(path)
        if slug is not None or state.phase != "done":
            return state
    wanted = f"ticket {slug!r}" if slug else "unfinished ticket"
    raise StateError(
        f"no {wanted} to resume in this repository; start one with cairn ticket SOURCE"
    )


def _read(path: Path) -> TicketState:
    try:
        return TicketState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise StateError(
            f"cannot read {path}: {exc}; delete it to start the ticket again"
        ) from None
