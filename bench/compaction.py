"""Compaction retention: how many facts and rules planted early survive ten and more compactions.

Runs the real server (SQLite) with the planted session of tests/support/planted.py over its
websocket: the task and three rules said by the user in the first turns, three facts in the
first tool results, four files edited, patched, written and tested; then turns that read long
files, so a small budget forces a compaction every few turns. The model is the fake OpenAI
server; the summary model (CAIRN_SUMMARY_MODEL) the fake Anthropic one, in two modes:

- `model`: a forgetful summariser (the first summary records the facts and one rule, no file;
  every later one only where the work stands, with its own newest rule and fact);
- `digest`: the summariser fails every time, so every compaction is the deterministic digest.

For each mode: compactions, retention (planted items found in the last request the model
received / planted), the retention the model's last summary alone would give (what Cairn
kept before summaries were merged: the newest summary replaced the previous one), and the
summary's tokens after each compaction (it is bounded by 15% of the budget). The last line is
one key=value line.

    uv run python bench/compaction.py [--turns 36] [--budget 6000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from cairn_fakes.runner import FakeModelServer  # noqa: E402
from cairn_server.context.tokens import count_tokens  # noqa: E402
from support.planted import (  # noqa: E402
    PLANTED,
    forgetful_answers,
    forgetful_summaries,
    model_script,
    planted_session,
    retained,
)
from support.servers import cairn_server, script, sqlite_url, with_summaries  # noqa: E402

SUMMARY = re.compile(r"<summary>\n(.*?)\n</summary>", re.DOTALL)
REFUSAL = {"error": {"status": 400, "message": "summaries are off today"}}


@dataclass(frozen=True)
class Figures:
    compactions: int
    kept: list[str]
    replaced_only: int  # planted items kept had each summary replaced the one before
    summary_tokens: list[int]  # after each compaction, as the model received it


def run_mode(mode: str, turns: int, budget: int, folder: Path) -> Figures:
    with FakeModelServer() as model, FakeModelServer() as summaries:
        model.set_script(model_script(turns))
        summaries.set_script(
            forgetful_summaries(turns * 2) if mode == "model" else script(*[REFUSAL] * turns * 2)
        )
        with cairn_server(
            sqlite_url(folder), model, context_budget=budget, **with_summaries(summaries)
        ) as server:
            session = asyncio.run(planted_session(server.url, turns))
        bodies = [r.body for r in model.requests]
        answers = [json.dumps(r.body) for r in summaries.requests]
    last = bodies[-1]
    kept = [item.name for item in retained(last)]
    summaries_seen = _distinct_summaries(bodies)
    # Before merging, the stored summary was the model's newest answer (or a digest that
    # nested the previous one): what the last request would then have carried.
    newest = forgetful_answers(len(answers))[-1] if mode == "model" else ""
    alone = json.dumps(last["messages"][1:]) + newest
    replaced_only = sum(item.probe in alone for item in PLANTED)
    return Figures(
        compactions=len(session.compactions),
        kept=kept,
        replaced_only=replaced_only if mode == "model" else -1,
        summary_tokens=[count_tokens(text) for text in summaries_seen],
    )


def _distinct_summaries(bodies: list[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for body in bodies:
        match = SUMMARY.search(str(body["messages"][0]["content"]))
        if match and (not seen or seen[-1] != match.group(1)):
            seen.append(match.group(1))
    return seen


def report(mode: str, figures: Figures, budget: int) -> list[str]:
    planted = len(PLANTED)
    tokens = figures.summary_tokens
    lost = [item.name for item in PLANTED if item.name not in figures.kept]
    print(
        f"{mode:<6} compactions {figures.compactions:3}  retention "
        f"{len(figures.kept)}/{planted}  summary tokens p50 {statistics.median(tokens):.0f} "
        f"max {max(tokens)} (limit {int(budget * 0.15)})"
        + (f"  lost: {', '.join(lost)}" if lost else "")
    )
    if figures.replaced_only >= 0:
        print(f"       newest summary alone (before merging) would keep {figures.replaced_only}")
    print(f"       summary tokens after each compaction: {tokens}")
    pairs = [
        f"{mode}_compactions={figures.compactions}",
        f"{mode}_retention={len(figures.kept) / planted:.3f}",
        f"{mode}_summary_tokens_p50={statistics.median(tokens):.0f}",
        f"{mode}_summary_tokens_max={max(tokens)}",
    ]
    if figures.replaced_only >= 0:
        pairs.append(f"{mode}_retention_newest_only={figures.replaced_only / planted:.3f}")
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=36)
    parser.add_argument("--budget", type=int, default=6000)
    args = parser.parse_args()
    pairs = [f"planted={len(PLANTED)}", f"turns={args.turns}", f"budget={args.budget}"]
    with tempfile.TemporaryDirectory(prefix="cairn-compaction-") as tmp:
        for mode in ("model", "digest"):
            folder = Path(tmp) / mode
            folder.mkdir()
            pairs += report(mode, run_mode(mode, args.turns, args.budget, folder), args.budget)
    print(" ".join(pairs))


if __name__ == "__main__":
    main()
