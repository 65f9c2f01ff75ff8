"""Load: N scripted clients at once against one real `cairn-server`, each running a run of
five tool steps with an instant fake model.

Owns the measurement: runs completed and failed (with their reasons), the step turnaround
each client sees (from its tool result sent to the next tool request), the server's CPU per
step and, on PostgreSQL, the most connections the server held. A client here answers every
tool request at once with a canned result (no tool runs): what is measured is the server.
Each client is a new codebase (a new agent), as many users at once would be; one client
runs first, unmeasured, so the server's one-time costs (imports, tokenizer) are left out.

    uv run python bench/load.py                        # SQLite, 1, 10 and 100 clients
    uv run python bench/load.py --clients 1 10 100 300 --database postgresql
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from cairn_fakes.runner import FakeModelServer
from cairn_fakes.script import Script
from cairn_protocol import (
    PROTOCOL_VERSION,
    Hello,
    ToolResult,
    UserMessage,
    WorkspaceIdentity,
)
from websockets.asyncio.client import connect

TOKEN = "cairn_bench_load_token"
STEPS = 5  # model calls per run: each answers with a tool call, so the step limit ends it
POSTGRES_ADMIN_URL = os.environ.get(
    "CAIRN_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/postgres"
)
RUN_TIMEOUT_S = 600.0


@dataclass
class Outcome:
    """One client's run, as it saw it."""

    stop_reason: str = "none"
    detail: str | None = None
    turnarounds_ms: list[float] = field(default_factory=list)


def read_turns(count: int) -> Script:
    turn = {"tool_calls": [{"name": "read", "arguments": {"path": "module.py"}}]}
    return Script.from_dict({"turns": [{**turn, "chunk_size": 4096} for _ in range(count)]})


def start_server(url: str, fake: FakeModelServer) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        **os.environ,
        "CAIRN_DATABASE_URL": url,
        "CAIRN_BOOTSTRAP_TOKEN": TOKEN,
        "CAIRN_MODEL": "openai/gpt-5.4-mini",
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": fake.openai_base_url,
        "CAIRN_STEP_LIMIT": str(STEPS),
    }
    command = [sys.executable, "-m", "cairn_server", "serve", "--port", "0", "--announce"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None
    port = int(json.loads(process.stdout.readline())["port"])
    return process, port


async def one_client(port: int, index: int) -> Outcome:
    """A client of its own codebase: hello, one message, every request answered at once."""
    outcome = Outcome()
    workspace = WorkspaceIdentity(
        root_commit=uuid.uuid4().hex + uuid.uuid4().hex[:8],
        display_name=f"load-{index}",
        path=f"/load/{index}",
    )
    hello = Hello(
        protocol_version=PROTOCOL_VERSION,
        token=TOKEN,
        workspace=workspace,
        tools=["read"],
        conversation="new",
        client_id=f"load-{index}",
    )
    async with connect(f"ws://127.0.0.1:{port}/v1/ws", max_size=None) as socket:
        await socket.send(hello.model_dump_json())
        welcome = json.loads(await socket.recv())
        if welcome.get("type") != "welcome":
            return Outcome("refused", str(welcome)[:200])
        await socket.send(UserMessage(text="read module.py repeatedly").model_dump_json())
        answered_at: float | None = None
        async for raw in socket:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "tool_request":
                if answered_at is not None:
                    outcome.turnarounds_ms.append((time.perf_counter() - answered_at) * 1000)
                result = ToolResult(call_id=frame["call_id"], status="ok", content="x = 1\n" * 50)
                await socket.send(result.model_dump_json())
                answered_at = time.perf_counter()
            elif kind == "run_finished":
                return Outcome(frame["stop_reason"], frame.get("detail"), outcome.turnarounds_ms)
            elif kind == "error":
                return Outcome("error", frame.get("message"), outcome.turnarounds_ms)
    return Outcome("closed", None, outcome.turnarounds_ms)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ConnectionCount:
    """The most connections to one PostgreSQL database, sampled while the clients run."""

    def __init__(self, database: str | None) -> None:
        self.database = database
        self.peak = 0

    async def sample(self, stop: asyncio.Event) -> None:
        if self.database is None:
            return
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            while not stop.is_set():
                count = await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", self.database
                )
                self.peak = max(self.peak, int(count or 0))
                await asyncio.sleep(0.05)
        finally:
            await admin.close()


async def load(port: int, clients: int, database: str | None) -> tuple[list[Outcome], int]:
    stop = asyncio.Event()
    counter = ConnectionCount(database)
    sampler = asyncio.create_task(counter.sample(stop))
    runs = [asyncio.wait_for(one_client(port, index), RUN_TIMEOUT_S) for index in range(clients)]
    settled = await asyncio.gather(*runs, return_exceptions=True)
    stop.set()
    await sampler
    outcomes = [
        o if isinstance(o, Outcome) else Outcome("client_failed", repr(o)[:200]) for o in settled
    ]
    return outcomes, counter.peak


def database_url(kind: str, folder: Path) -> tuple[str, str | None]:
    """The server's URL, and the PostgreSQL database's name to count connections of."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{folder / 'cairn.db'}", None
    name = f"cairn_load_{uuid.uuid4().hex[:10]}"
    asyncio.run(administer(f'CREATE DATABASE "{name}"'))
    return f"postgresql+asyncpg://postgres@127.0.0.1/{name}", name


def drop_database(name: str | None) -> None:
    if name is not None:
        asyncio.run(administer(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def administer(statement: str) -> None:
    admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(kind: str, clients: int) -> dict[str, float | int | str]:
    with tempfile.TemporaryDirectory(prefix="cairn-load-") as tmp, FakeModelServer() as fake:
        fake.set_script(read_turns((clients + 1) * STEPS + 10))
        url, database = database_url(kind, Path(tmp))
        server, port = start_server(url, fake)
        try:
            asyncio.run(one_client(port, -1))  # imports, tokenizer, model list: paid once
            before = cpu_seconds(server.pid)
            started = time.perf_counter()
            outcomes, peak = asyncio.run(load(port, clients, database))
            wall = time.perf_counter() - started
            cpu = cpu_seconds(server.pid) - before
        finally:
            server.terminate()
            server.wait(timeout=30)
            drop_database(database)
    reasons = Counter(o.stop_reason for o in outcomes)
    completed = reasons["step_limit"]
    failures = Counter(f"{o.stop_reason}: {(o.detail or '')[:90]}" for o in outcomes)
    for failure, count in failures.items():
        if not failure.startswith("step_limit"):
            print(f"    {count} x {failure}")
    turnarounds = [ms for o in outcomes for ms in o.turnarounds_ms]
    steps = max(1, completed * STEPS)
    return {
        "database": kind,
        "clients": clients,
        "completed": completed,
        "errors": clients - completed,
        "p50_ms": round(statistics.median(turnarounds), 1) if turnarounds else float("nan"),
        "p95_ms": round(percentile(turnarounds, 0.95), 1),
        "cpu_ms_per_step": round(cpu * 1000 / steps, 1),
        "wall_s": round(wall, 2),
        "db_connections": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="sqlite")
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    print(f"load: each client one run of {STEPS} tool steps, instant fake model, one server")
    figures: list[str] = []
    for kind in kinds:
        for clients in args.clients:
            row = measure(kind, clients)
            print(
                f"  {kind:10} {clients:4} clients: {row['completed']:4} completed "
                f"{row['errors']:3} errors  step p50 {row['p50_ms']:7.1f} ms "
                f"p95 {row['p95_ms']:7.1f} ms  server CPU {row['cpu_ms_per_step']:5.1f} ms/step "
                f"db connections {row['db_connections']}  ({row['wall_s']} s)"
            )
            tag = f"{kind}_{clients}"
            figures += [
                f"{tag}_errors={row['errors']}",
                f"{tag}_p50_ms={row['p50_ms']}",
                f"{tag}_cpu_ms_per_step={row['cpu_ms_per_step']}",
            ]
    print(" ".join(figures))


if __name__ == "__main__":
    main()
