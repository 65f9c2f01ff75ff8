"""Redaction speed on 30 KB tool outputs, and what it cuts from a real corpus that holds no
real secrets (false positives).

Speed: the median over several runs of `redact` on 30 KB of this repository's Python
source, its `git log -p`, uv.lock, JSON, and a worst case with a secret on every line.
Corpus: every text file git tracks in a folder (default: this repository; every file when
the folder is not in git), line by line; each changed line is listed with `--show`, so a
person can judge which cuts were wrong.

    uv run python bench/redaction.py [--corpus FOLDER ...] [--show]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import time
from collections import Counter
from pathlib import Path

from cairn_protocol.redaction import redact

SIZE = 30_000
RUNS = 7
ROOT = Path(__file__).resolve().parent.parent
MARKER_KIND = "[REDACTED:"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, nargs="+", default=[ROOT])
    parser.add_argument("--show", action="store_true", help="print every changed line")
    args = parser.parse_args()
    start = time.perf_counter()
    redact("warm up: load detect-secrets")
    first_call = time.perf_counter() - start
    print(f"first call (imports detect-secrets, compiles): {_ms(first_call)}")
    figures = {"first_call_ms": f"{first_call * 1000:.1f}", **speed()}
    scanned = changed = 0
    for folder in args.corpus:
        lines, cut = corpus(folder, args.show)
        scanned, changed = scanned + lines, changed + cut
    figures |= {
        "corpus_lines": str(scanned),
        "corpus_lines_changed": str(changed),
        "corpus_changed_share": f"{changed / scanned if scanned else 0.0:.5f}",
    }
    print(" ".join(f"{key}={value}" for key, value in figures.items()))


def speed() -> dict[str, str]:
    """Median time of redact() per sample; the figures by sample name."""
    print(f"\nredact() on {SIZE // 1000} KB, median of {RUNS} runs:")
    figures: dict[str, str] = {}
    for name, text in samples().items():
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            _, count = redact(text)
            times.append(time.perf_counter() - start)
        lines = text.count("\n") + 1
        print(f"  {name:<22} {_ms(statistics.median(times)):>9}  ({lines:,} lines, {count} cut)")
        key = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
        figures[f"{key}_ms"] = f"{statistics.median(times) * 1000:.1f}"
    return figures


def samples() -> dict[str, str]:
    python = "".join(p.read_text() for p in sorted((ROOT / "server" / "src").rglob("*.py")))
    log = _git(ROOT, "log", "-p", "-n", "40")
    json_text = "".join(p.read_text() for p in sorted((ROOT / "docs" / "protocol").rglob("*.json")))
    secret_lines = "".join(
        f"+API_KEY_{n}=Zq8{n:05d}xR2mT7vLp4Nw  # ghp_{n:06d}A1b2C3d4E5f6G7h8I9j0K1l2M3n4\n"
        for n in range(SIZE // 60)
    )
    return {
        "python source": _cut(python),
        "git log -p": _cut(log),
        "uv.lock": _cut((ROOT / "uv.lock").read_text()),
        "JSON schemas": _cut(json_text),
        "a secret every line": _cut(secret_lines),
    }


def corpus(root: Path, show: bool) -> tuple[int, int]:
    """Redact every text file of `root`; the lines scanned and the lines changed."""
    files = _tracked(root) or sorted(path for path in root.rglob("*") if path.is_file())
    scanned = changed = 0
    kinds: Counter[str] = Counter()
    by_file: Counter[str] = Counter()
    for path in files:
        text = _text(path)
        if text is None:
            continue
        redacted, _ = redact(text)
        before, after = text.split("\n"), redacted.split("\n")
        scanned += len(before)
        for line, cut in zip(before, after, strict=False):
            if line == cut:
                continue
            changed += 1
            by_file[str(path.relative_to(root))] += 1
            kinds.update(part.split("]")[0] for part in cut.split(MARKER_KIND)[1:])
            if show:
                print(f"{path.relative_to(root)}: {line.strip()[:140]}\n    -> {cut.strip()[:140]}")
    share = changed / scanned if scanned else 0.0
    print(f"\ncorpus {root}: {len(files):,} files, {scanned:,} lines scanned")
    print(f"lines changed: {changed:,} ({share:.3%})")
    print("by kind: " + ", ".join(f"{kind} {n}" for kind, n in kinds.most_common()))
    print("by file: " + ", ".join(f"{name} {n}" for name, n in by_file.most_common(15)))
    return scanned, changed


def _tracked(root: Path) -> list[Path]:
    try:
        return [root / name for name in _git(root, "ls-files").splitlines()]
    except subprocess.CalledProcessError:
        return []


def _text(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", errors="replace")


def _cut(text: str) -> str:
    while len(text) < SIZE:
        text += text
    return text[:SIZE]


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


if __name__ == "__main__":
    main()
