"""Startup: how long the real `cairn` takes to answer `--help`, `--version`, `runs list`, and
to send `-p`'s first model request with the local server already up and cold.

Runs the installed `cairn` executable (not `uv run`, whose own start would be counted) 10
times per figure against a fake model in this process, which records when each request
arrives, and the TUI in tmux (to its input box on screen, and to a typed key shown in it);
prints the p50s beside the issue's goals and Letta Code's, then one key=value line.

    uv run python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cairn_client.local_server import read_state, stop_local_server
from cairn_fakes.runner import FakeModelServer
from cairn_fakes.script import Script

RUNS = 10
TUI_READY = "Message cairn"  # the input box's placeholder
TYPED = "zqzq"
LETTA_FIRST_REQUEST_S = "1.5-2.3"
# The goals, in seconds.
GOALS = {
    "help": 0.15,
    "version": 0.15,
    "first_request_up": 0.4,
    "first_request_cold": 1.5,
    "tui_keystroke": 0.5,
}


def cairn_command() -> list[str]:
    """The `cairn` executable beside this interpreter, as installed (its entry point)."""
    installed = Path(sys.executable).parent / "cairn"
    if installed.exists():
        return [str(installed)]
    found = shutil.which("cairn")
    return [found] if found else [sys.executable, "-m", "cairn_client.entry"]


def make_repo(folder: Path) -> Path:
    repo = folder / "repo"
    repo.mkdir()
    (repo / "app.py").write_text("def total(items):\n    return 1\n")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@cairn.invalid"]
    for step in (["init", "-q"], ["add", "."], ["commit", "-qm", "init"]):
        subprocess.run([*git, *step], cwd=repo, check=True)
    return repo


class Bench:
    """One repository, one data folder and one fake model for every run."""

    def __init__(self, folder: Path, fake: FakeModelServer) -> None:
        self.repo = make_repo(folder)
        self.data_dir = folder / "data"
        self.fake = fake
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")},
            "CAIRN_DATA_DIR": str(self.data_dir),
            "CAIRN_MODEL": "openai/gpt-5.4-mini",
            "OPENAI_API_KEY": "bench",
            "OPENAI_BASE_URL": fake.openai_base_url,
        }

    def run(self, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run `cairn ARGS` to its end; (when it was launched, what it did)."""
        started = time.perf_counter()
        done = subprocess.run(
            [*cairn_command(), *args],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return started, done

    def wall(self, *args: str) -> float:
        started, done = self.run(*args)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"cairn {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return elapsed

    def first_request(self) -> float:
        """`cairn -p`: seconds from launch to the fake model receiving the request."""
        self.fake.set_script(Script.from_dict({"turns": [{"text": "ok"}]}))
        self.fake.clear_requests()
        started, done = self.run("-p", "say ok")
        if done.returncode != 0 or not self.fake.requests:
            raise SystemExit(f"cairn -p failed:\n{done.stdout}\n{done.stderr}")
        return self.fake.requests[0].received_at - started

    def tui_start(self) -> tuple[float, float]:
        """`cairn` (the TUI) in a fresh tmux: seconds from launch to its input box on screen,
        and to a typed key showing in it."""
        socket_name = f"cairn-startup-{os.getpid()}-{time.monotonic_ns()}"
        tmux = ["tmux", "-L", socket_name]
        command = " ".join(shlex.quote(part) for part in cairn_command())
        socket_path = Path(f"/tmp/tmux-{os.getuid()}") / socket_name  # tmux leaves it behind
        started = time.perf_counter()
        subprocess.run(
            [*tmux, "new-session", "-d", "-x", "120", "-y", "40", "-c", str(self.repo), command],
            env={**self.env, "TERM": "xterm-256color"},
            check=True,
        )
        try:
            painted = self._screen_shows(tmux, TUI_READY) - started
            subprocess.run([*tmux, "send-keys", "-l", TYPED], check=True)
            typed = self._screen_shows(tmux, TYPED) - started
        finally:
            subprocess.run([*tmux, "kill-server"], capture_output=True)
            socket_path.unlink(missing_ok=True)
        return painted, typed

    @staticmethod
    def _screen_shows(tmux: list[str], text: str, timeout: float = 60) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p"], capture_output=True, text=True
            ).stdout
            if text in screen:
                return time.perf_counter()
            time.sleep(0.01)
        raise SystemExit(f"the TUI never showed {text!r}; the screen was:\n{screen}")

    def stop_server(self) -> None:
        stop_local_server(self.data_dir)


def wall_of(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def p50(
    measure: Callable[[], float], runs: int, before: Callable[[], object] | None = None
) -> float:
    values = []
    for _ in range(runs):
        if before is not None:
            before()
        values.append(measure())
    return statistics.median(values)


def bytecode_note() -> str:
    """Whether Cairn's own modules start from compiled bytecode or are compiled each time."""
    import cairn_client

    cache = Path(cairn_client.__file__).parent / "__pycache__"
    compiled = cache.is_dir() and any(cache.glob("cli.*.pyc"))
    writes = "not written (PYTHONDONTWRITEBYTECODE)" if sys.dont_write_bytecode else "written"
    return f"cairn_client bytecode: {'compiled' if compiled else 'missing'}, new bytecode {writes}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="cairn-startup-") as tmp, FakeModelServer() as fake:
        bench = Bench(Path(tmp), fake)
        try:
            figures = {
                # A bare interpreter's start, the floor every figure stands on (machine noise).
                "python": p50(lambda: wall_of([sys.executable, "-c", "pass"]), runs),
                "help": p50(lambda: bench.wall("--help"), runs),
                "version": p50(lambda: bench.wall("--version"), runs),
                # The first run of a new data folder starts its server and makes its database.
                "first_request_fresh": bench.first_request(),
                "first_request_up": p50(bench.first_request, runs),
                "runs_list": p50(lambda: bench.wall("runs", "list"), runs),
                "first_request_cold": p50(bench.first_request, runs, before=bench.stop_server),
            }
            if shutil.which("tmux") is not None:  # the server is up (the last -p started it)
                tui = [bench.tui_start() for _ in range(runs)]
                figures["tui_paint"] = statistics.median(paint for paint, _ in tui)
                figures["tui_keystroke"] = statistics.median(typed for _, typed in tui)
            state = read_state(bench.data_dir)
        finally:
            bench.stop_server()
    assert state is not None, "no local server was left up after the last run"

    load = os.getloadavg()[0]
    print(f"cairn startup, p50 of {runs} runs ({' '.join(cairn_command())}), load {load:.1f}")
    print(f"  {bytecode_note()}")
    rows = [
        ("python -c pass (the floor)", "python"),
        ("cairn --help", "help"),
        ("cairn --version", "version"),
        ("cairn runs list (server up)", "runs_list"),
        ("cairn -p to first model request, server up", "first_request_up"),
        ("cairn -p to first model request, server cold", "first_request_cold"),
        ("  the same, new data folder (one run)", "first_request_fresh"),
    ]
    if "tui_paint" in figures:
        rows += [
            ("cairn (TUI) to its input box on screen, server up", "tui_paint"),
            ("cairn (TUI) to a typed key shown, server up", "tui_keystroke"),
        ]
    for label, key in rows:
        goal = GOALS.get(key)
        beside = f"goal <= {goal:.2f} s" if goal is not None else ""
        verdict = "" if goal is None else ("met" if figures[key] <= goal else "not met")
        print(f"  {label:<52} {figures[key]:6.3f} s   {beside:<16} {verdict}".rstrip())
    print(f"  Letta Code (ref.), launch to first model request: {LETTA_FIRST_REQUEST_S} s")
    if "tui_paint" not in figures:
        print("  not measured: the TUI's first paint and first keystroke (tmux is not installed)")
    # Ratios hold better than seconds on a busy machine.
    up_vs_cold = figures["first_request_up"] / figures["first_request_cold"]
    print(f"  server up / cold, first model request: {up_vs_cold:.2f}")
    print(
        " ".join(f"{key}_s={value:.3f}" for key, value in figures.items())
        + f" up_vs_cold={up_vs_cold:.2f} load_1m={load:.1f} runs={runs}"
        + f" letta_first_request_s={LETTA_FIRST_REQUEST_S}"
    )


if __name__ == "__main__":
    main()
