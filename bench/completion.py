"""`@` completion on a large repository: what a keystroke costs, beside sorting the same paths.

Builds the listing of 100,000 files as the TUI does after ripgrep (folders added, paths
lowered and ordered once, the policy asked only for what is offered), then times typing
`@module_9` letter by letter, a query matching every file, and one matching none. Figures are
ratios to sorting the 100,000 lowered paths once (the machine is shared, so seconds vary).

    uv run python bench/completion.py
"""

from __future__ import annotations

import dataclasses
import statistics
import time

from cairn_client.mentions import PathListing, _with_folders
from cairn_client.policy.policy import Policy
from cairn_client.policy.settings import PolicySettings
from cairn_client.tools.sandbox import Sandbox

FILES = 100_000
RUNS = 5


def median(work: object, runs: int = RUNS) -> float:
    assert callable(work)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    paths = [f"pkg{n % 50}/sub{n % 300}/module_{n}.py" for n in range(FILES)]
    policy = Policy(PolicySettings(deny=["read(private/**)"]), sandbox=Sandbox(None, environ={}))
    baseline = median(lambda: sorted(path.lower() for path in paths))

    def build() -> PathListing:
        return PathListing.of(_with_folders(paths), policy.denies_reading)

    listing = build()
    built = median(build, runs=2)

    def typing() -> None:
        fresh = dataclasses.replace(listing)  # nothing typed before
        for end in range(1, len("module_9") + 1):
            fresh.best("module_9"[:end])

    keystrokes = median(typing) / len("module_9")
    every = median(lambda: dataclasses.replace(listing).best("py"))
    none = median(lambda: dataclasses.replace(listing).best("xyzq"))
    print(f"{FILES:,} files; baseline (sorting them once): {baseline * 1000:.0f} ms")
    print(f"listing built (after ripgrep, in a thread): {built / baseline:.1f}x baseline")
    print(f"one keystroke typing @module_9: {keystrokes / baseline:.2f}x baseline")
    print(f"@py (every file matches): {every / baseline:.2f}x baseline")
    print(f"@xyzq (none matches): {none / baseline:.2f}x baseline")


if __name__ == "__main__":
    main()
