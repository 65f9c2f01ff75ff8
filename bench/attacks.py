"""The attack suite of issue 12: the security review's findings and their neighbours, tried
against the real `cairn` (headless, its tools, policy, sandbox and redaction) and the real
`cairn-server`, driven by the fake model server, which records everything it is told.

Categories: confinement, shell (classification), sandbox, secrets (36 formats through every
tool, and in shell under every mode), multi-client, storage, protocol. One line per attack
(held or FAILED with why), a summary per category, then one line of figures:

    tried=N held=N failed=N confinement_failed=0 ... wall_s=…

Exit code 0 when nothing failed, 1 otherwise.

    uv run python bench/attacks.py                 # everything
    uv run python bench/attacks.py --only secrets  # one category
    uv run python bench/attacks.py --quick         # one batch per category (the CI subset)
    uv run python bench/attacks.py --list          # the attacks, without running them
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attack_suite import server_attacks, tool_attacks, web_attacks  # noqa: E402
from attack_suite.core import CATEGORIES, Family, Outcome  # noqa: E402
from attack_suite.lab import Lab  # noqa: E402


def all_families() -> list[Family]:
    return [*tool_attacks.families(), *server_attacks.families(), web_attacks.web_family()]


def chosen(families: list[Family], only: str | None, quick: bool) -> list[Family]:
    picked = [f for f in families if only is None or only in f.categories]
    return [f for f in picked if f.quick] if quick else picked


def run_family(lab: Lab, family: Family, only: str | None) -> list[Outcome]:
    """The family's outcomes (in the chosen category); a crash fails every one of its attacks."""
    try:
        outcomes = family.run(lab)
    except Exception as exc:  # the harness must report, not die, when an attack breaks things
        detail = traceback.format_exception_only(exc)[-1].strip()
        outcomes = [Outcome(c, n, f"the attack run crashed: {detail}") for c, n in family.names()]
    return [o for o in outcomes if only is None or o.category == only]


def report(outcomes: list[Outcome], wall: float) -> str:
    tried = Counter(o.category for o in outcomes)
    failed = Counter(o.category for o in outcomes if not o.held)
    print()
    for category in CATEGORIES:
        if tried[category]:
            held = tried[category] - failed[category]
            counts = f"tried={tried[category]:<4} held={held:<4} failed={failed[category]}"
            print(f"{category:<13} {counts}")
    total_failed = sum(failed.values())
    figures = [
        f"tried={len(outcomes)}",
        f"held={len(outcomes) - total_failed}",
        f"failed={total_failed}",
    ]
    figures += [f"{c.replace('-', '_')}_failed={failed[c]}" for c in CATEGORIES if tried[c]]
    figures.append(f"wall_s={wall:.1f}")
    return " ".join(figures)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=CATEGORIES, help="run one category")
    parser.add_argument("--quick", action="store_true", help="one batch per category")
    parser.add_argument("--list", action="store_true", help="list the attacks and exit")
    parser.add_argument("--verbose", action="store_true", help="also what the model was told")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    families = chosen(all_families(), args.only, args.quick)
    if args.list:
        for family in families:
            for category, name in family.names():
                if args.only is None or category == args.only:
                    print(f"{category:<13} {name}")
        return 0
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    with Lab(keep=args.keep) as lab:
        lab.quick = args.quick
        if args.keep:
            print(f"scratch: {lab.root}", file=sys.stderr)
        for family in families:
            if family.prepare is not None and not args.quick:
                family.prepare(lab)
        for family in families:
            for outcome in run_family(lab, family, args.only):
                mark = "held  " if outcome.held else "FAILED"
                why = f"  -- {outcome.failure}" if outcome.failure else ""
                print(f"{outcome.category:<13} {mark} {outcome.name}{why}", flush=True)
                if args.verbose and outcome.seen:
                    print("    | " + outcome.seen[:400].replace("\n", "\n    | "))
                outcomes.append(outcome)
    print(report(outcomes, time.perf_counter() - started))
    return 0 if all(o.held for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
