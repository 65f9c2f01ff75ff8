"""Tickets end to end: scripted tickets on sample repositories, run by the real `cairn ticket`.

Each ticket runs headless (`--approve all --json`, its embedded server) against the fake model
in this process, which follows a script: explore, plan, edit, run the tests, note what was
learned, summarise. Per ticket it prints wall time, model requests, tokens in/cached/out,
approvals asked, and whether the commit's tree equals the expected result. The second ticket
on a repository (after the first is merged) shows what memory carries: it starts knowing
the test command the first one learned. The last ticket runs with `--approve edits` and a user
settings rule that allows only the test command, so its `git push` is denied (nobody to ask).

    uv run python bench/ticket.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cairn_client.local_server import stop_local_server
from cairn_fakes.runner import FakeModelServer
from cairn_fakes.script import Script

TEST_COMMAND = "python -m pytest -q -p no:cacheprovider"
CALC = (
    "def total(items):\n    return 1\n\n\ndef mean(items):\n    return total(items) / len(items)\n"
)
CALC_TEST = "from calc import mean, total\n\n\ndef test_total():\n    assert total([1, 2]) == 3\n"
TEXT = "def shout(text):\n    return text.upper()\n"
TEXT_TEST = "from text import shout\n\n\ndef test_shout():\n    assert shout('a') == 'A'\n"
SLUG = (
    "def shout(text):\n    return text.upper()\n\n\n"
    "def slug(text):\n    return '-'.join(text.lower().split())\n"
)


@dataclass(frozen=True)
class BenchTicket:
    name: str
    repo: str
    ticket: str  # the ticket file's text
    turns: list[dict[str, Any]]  # the model's script
    expected: dict[str, str]  # files of the expected commit that differ from the base
    approve: str = "all"  # --approve; with "edits", the settings allow only the test command


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"name": name, "arguments": arguments}


def implement(
    *edits: dict[str, Any], lesson: str | None, then: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Edit, run the tests, maybe note a lesson, do `then`, and say what was done."""
    turns: list[dict[str, Any]] = [{"tool_calls": [edit]} for edit in edits]
    turns.append({"tool_calls": [call("shell", command=TEST_COMMAND)]})
    if lesson:
        turns.append({"tool_calls": [call("memory_insert", label="project", text=lesson)]})
    turns += then or []
    turns.append({"text": "Done: the change is in and the tests pass."})
    return turns


TICKETS = [
    BenchTicket(
        "fix-total",
        "calc",
        "# Fix total\n\ntotal() returns 1 whatever the items.\n",
        [
            {"text": "Reading. ", "tool_calls": [call("read", path="calc.py")]},
            {"text": "Plan: make total() return sum(items); run the tests."},
            *implement(
                call("edit", path="calc.py", old_string="return 1", new_string="return sum(items)"),
                lesson=f"Tests: {TEST_COMMAND}",
            ),
        ],
        {"calc.py": CALC.replace("return 1", "return sum(items)")},
    ),
    BenchTicket(
        "mean-empty",
        "calc",
        "# mean([]) crashes\n\nIt should return 0.0 for no items.\n",
        [
            {"text": "Plan: guard mean() against no items; run the tests (command in memory)."},
            *implement(
                call(
                    "apply_patch",
                    patch=(
                        "--- a/calc.py\n+++ b/calc.py\n@@ -5,2 +5,4 @@\n def mean(items):\n"
                        "+    if not items:\n+        return 0.0\n"
                        "     return total(items) / len(items)\n"
                    ),
                ),
                lesson=None,
            ),
        ],
        {
            "calc.py": CALC.replace("return 1", "return sum(items)").replace(
                "    return total(items) / len(items)",
                "    if not items:\n        return 0.0\n    return total(items) / len(items)",
            )
        },
    ),
    BenchTicket(
        "add-slug",
        "text",
        "# Add slug()\n\nslug('A b') should give 'a-b'.\n",
        [
            {"tool_calls": [call("grep", pattern="def ")]},
            {"text": "Plan: add slug() to text.py, a test, and run the tests."},
            *implement(
                call("write", path="text.py", content=SLUG),
                call(
                    "edit",
                    path="test_text.py",
                    old_string="from text import shout\n",
                    new_string="from text import shout, slug\n",
                ),
                lesson=f"Tests: {TEST_COMMAND}; one test file per module",
                # Not allowed by the settings and nobody to ask: denied, and the agent goes on.
                then=[{"tool_calls": [call("shell", command="git push origin HEAD")]}],
            ),
        ],
        {"text.py": SLUG, "test_text.py": TEXT_TEST.replace("shout\n", "shout, slug\n", 1)},
        approve="edits",
    ),
]
REPOS = {
    "calc": {"calc.py": CALC, "test_calc.py": CALC_TEST},
    "text": {"text.py": TEXT, "test_text.py": TEXT_TEST},
}


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=bench", "-c", "user.email=bench@cairn.invalid", *args]
    finished = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True)
    return finished.stdout.strip()


def make_repo(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    # As any Python repository has: the test command's caches are not changes to the tree
    # (a ticket refuses to start on a dirty tree).
    (folder / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n")
    for name, text in files.items():
        (folder / name).write_text(text)
    git(folder, "init", "-q", "-b", "main")
    git(folder, "add", "-A")
    git(folder, "commit", "-qm", "init")
    return folder


def expected_tree(repo: Path, base: str, files: dict[str, str]) -> str:
    """The tree of base with `files` written over it, made without touching the work tree."""
    index = repo / ".git" / "bench-index"
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    subprocess.run(["git", "read-tree", base], cwd=repo, env=env, check=True)
    for name, text in files.items():
        blob = subprocess.run(
            ["git", "hash-object", "-w", "--stdin"],
            cwd=repo,
            input=text,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        subprocess.run(
            ["git", "update-index", "--add", "--cacheinfo", f"100644,{blob},{name}"],
            cwd=repo,
            env=env,
            check=True,
        )
    tree = subprocess.run(
        ["git", "write-tree"], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    index.unlink()
    return tree


def run_ticket(
    fake: FakeModelServer, repo: Path, data_dir: Path, ticket: BenchTicket
) -> dict[str, Any]:
    base = git(repo, "rev-parse", "HEAD")
    ticket_file = repo.parent / f"{ticket.name}.md"
    ticket_file.write_text(ticket.ticket)
    fake.set_script(Script.from_dict({"turns": ticket.turns}), keep_cache=True)
    asked_before = len(fake.requests)
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(data_dir.parent / "config"),
        "CAIRN_DATA_DIR": str(data_dir),
        "CAIRN_MODEL": "openai/gpt-5.4-mini",
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": fake.openai_base_url,
    }
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cairn_client.cli",
            "ticket",
            str(ticket_file),
            "--approve",
            ticket.approve,
            "--json",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        status = git(repo, "status", "--porcelain", "--ignored")
        raise SystemExit(f"{ticket.name}: exit {done.returncode}\n{done.stderr}\n{status}")
    result = json.loads(done.stdout)
    commit_tree = git(repo, "rev-parse", f"{result['commit']}^{{tree}}")
    git(repo, "switch", "-q", "main")
    git(
        repo, "merge", "-q", "--ff-only", result["branch"]
    )  # approved: the next ticket builds on it
    first_request = json.dumps(fake.requests[asked_before].body["messages"][0])
    return {
        "name": ticket.name,
        "wall_s": wall,
        "requests": len(fake.requests) - asked_before,
        "usage": result["usage"],
        "approvals": result["approvals"]["asked"],
        "tests": [t["status"] for t in result["tests"]],
        "matches": commit_tree == expected_tree(repo, base, ticket.expected),
        "knew_tests": TEST_COMMAND in first_request,
    }


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as scratch, FakeModelServer() as fake:
        root = Path(scratch)
        repos = {name: make_repo(root / name / "repo", files) for name, files in REPOS.items()}
        settings = root / "config" / "cairn" / "settings.toml"
        settings.parent.mkdir(parents=True)
        settings.write_text(f'[permissions]\nallow = ["shell({TEST_COMMAND})"]\n')
        for ticket in TICKETS:
            rows.append(run_ticket(fake, repos[ticket.repo], root / "data", ticket))
        stop_local_server(root / "data")  # `cairn` leaves it up for the next one
    print(
        f"{'ticket':<12} {'wall s':>7} {'reqs':>5} {'in':>7} {'cached':>7} {'out':>5} "
        f"{'asked':>5} {'tests':<8} {'knew tests':<10} {'commit = expected'}"
    )
    for row in rows:
        usage = row["usage"]
        print(
            f"{row['name']:<12} {row['wall_s']:>7.2f} {row['requests']:>5} "
            f"{usage['input_tokens']:>7} {usage['cached_input_tokens']:>7} "
            f"{usage['output_tokens']:>5} {row['approvals']:>5} {','.join(row['tests']):<8} "
            f"{str(row['knew_tests']):<10} {row['matches']}"
        )
    total_in = sum(r["usage"]["input_tokens"] for r in rows)
    cached = sum(r["usage"]["cached_input_tokens"] for r in rows)
    print(
        f"tickets={len(rows)} matched={sum(r['matches'] for r in rows)} "
        f"wall_s_mean={sum(r['wall_s'] for r in rows) / len(rows):.2f} "
        f"requests_total={sum(r['requests'] for r in rows)} input_tokens_total={total_in} "
        f"cached_share={cached / total_in:.3f} approvals_asked={sum(r['approvals'] for r in rows)} "
        f"second_ticket_knew_tests={rows[1]['knew_tests']}"
    )


if __name__ == "__main__":
    main()
