"""Turnaround: how long Cairn adds between model calls, and how fast `cairn -p` starts.

Runs the real `cairn` command headless (which starts its embedded server) against an instant
fake model in this process. Each of 20 steps is an auto-approved `read`: model answer →
server → websocket → client policy + tool → back → next model request. The baseline is the
bare openai SDK calling the same fake back to back, in the same process. The local server's
CPU per model call (from /proc) is the figure least moved by a noisy machine.

    uv run python bench/turnaround.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cairn_client.local_server import read_state, stop_local_server
from cairn_fakes.runner import FakeModelServer
from cairn_fakes.script import Script
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

STEPS = 20
LETTA_PLAIN_TURN_MS = "55-75"
LETTA_READ_TURN_MS = "130"
LETTA_COLD_START_S = "1.5-2.3"


def read_script(steps: int) -> Script:
    turns: list[dict[str, object]] = [
        {"tool_calls": [{"name": "read", "arguments": {"path": "module.py"}}], "chunk_size": 4096}
        for _ in range(steps)
    ]
    turns.append({"text": "done", "chunk_size": 4096})
    return Script.from_dict({"turns": turns})


def make_repo(folder: Path) -> Path:
    repo = folder / "repo"
    repo.mkdir()
    (repo / "module.py").write_text("".join(f"def f{i}():\n    return {i}\n" for i in range(200)))
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@cairn.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    return repo


def run_cairn(fake: FakeModelServer, repo: Path, data_dir: Path) -> tuple[float, float]:
    """Run `cairn -p` once; returns (launch time, first model request time) in perf_counter."""
    env = {
        **os.environ,
        "CAIRN_DATA_DIR": str(data_dir),
        "CAIRN_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'cairn.db'}",
        "CAIRN_MODEL": "openai/gpt-5.4-mini",
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": fake.openai_base_url,
        "CAIRN_STEP_LIMIT": str(STEPS + 5),
    }
    env.pop("CAIRN_SERVER_URL", None)
    fake.clear_requests()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cairn_client.cli", "-p", "read module.py repeatedly"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise SystemExit(f"cairn failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return started, fake.requests[0].received_at


def gaps_ms(fake: FakeModelServer) -> list[float]:
    """From each answer fully sent to the next request's arrival."""
    answers = fake.answer_times
    arrivals = [r.received_at for r in fake.requests]
    return [(arrivals[i + 1] - answers[i]) * 1000 for i in range(len(arrivals) - 1)]


async def bare_sdk_gaps_ms(fake: FakeModelServer, steps: int) -> list[float]:
    """The baseline: the openai SDK streaming the same answers, next request at once."""
    fake.set_script(read_script(steps))
    fake.clear_requests()
    client = AsyncOpenAI(api_key="bench", base_url=fake.openai_base_url)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "go"}]
    for _ in range(steps + 1):
        stream = await client.chat.completions.create(
            model="gpt-5.4-mini", messages=messages, stream=True
        )
        async for _chunk in stream:
            pass
        messages.append({"role": "user", "content": "again"})
    await client.close()
    return gaps_ms(fake)


def process_cpu_s(pid: int) -> float:
    """CPU seconds the process has used (user and system), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cairn-bench-") as tmp, FakeModelServer() as fake:
        folder = Path(tmp)
        repo = make_repo(folder)
        data_dir = folder / "data"

        fake.set_script(read_script(STEPS))
        launched, first_request = run_cairn(fake, repo, data_dir)
        cold_fresh_s = first_request - launched

        fake.set_script(read_script(STEPS))  # the local server the first one started is up
        server = read_state(data_dir)
        assert server is not None, "cairn -p left no local server up"
        cpu_before = process_cpu_s(server.pid)
        launched, first_request = run_cairn(fake, repo, data_dir)
        server_cpu_ms = (process_cpu_s(server.pid) - cpu_before) * 1000 / (STEPS + 1)
        cold_s = first_request - launched
        ours = gaps_ms(fake)
        assert len(ours) == STEPS, f"expected {STEPS} read steps, saw {len(ours)}"

        baseline = asyncio.run(bare_sdk_gaps_ms(fake, STEPS))
        stop_local_server(data_dir)  # `cairn` leaves it up for the next one

    median, high = statistics.median(ours), p95(ours)
    base_median = statistics.median(baseline)
    print(f"read-tool turnaround over {STEPS} steps (model answer -> next model request)")
    print(f"  cairn:              median {median:7.1f} ms   p95 {high:7.1f} ms")
    print(f"  bare SDK baseline:  median {base_median:7.1f} ms")
    print(f"  the server's CPU per model call of the run: {server_cpu_ms:.1f} ms")
    print(
        f"  Letta Code (ref.):  ~{LETTA_READ_TURN_MS} ms per read-tool turn, "
        f"~{LETTA_PLAIN_TURN_MS} ms per plain turn"
    )
    print("launching `cairn -p` to the first model request (bench/startup.py: p50s)")
    print(f"  cairn, server up: {cold_s:5.2f} s   new data dir, server cold: {cold_fresh_s:5.2f} s")
    print(f"  Letta Code (ref.):        ~{LETTA_COLD_START_S} s")
    print(
        f"turnaround_median_ms={median:.1f} turnaround_p95_ms={high:.1f} "
        f"baseline_median_ms={base_median:.2f} ratio_vs_baseline={median / base_median:.1f} "
        f"server_cpu_ms_per_step={server_cpu_ms:.1f} "
        f"server_up_start_s={cold_s:.2f} cold_start_fresh_s={cold_fresh_s:.2f} steps={STEPS} "
        f"letta_read_turn_ms={LETTA_READ_TURN_MS} letta_cold_start_s={LETTA_COLD_START_S}"
    )


if __name__ == "__main__":
    main()
