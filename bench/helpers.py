"""Helpers: N read-only helpers doing K reads each in parallel, against one run doing them all.

A real server (SQLite) and a real client session in this process, against the fake model
(instant, then answering in 0.5 s, the low end of a hosted model). "helpers": one `task`
call per helper in one answer, each helper reads K files and answers one line; "alone": the
parent does the N×K reads itself. Printed: the wall ratio, and the tokens of the parent's last
prompt (what its context holds after the work: the answers, or every file it read).

    uv run python bench/helpers.py
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairn_client.call_log import CallLog
from cairn_client.listener import ConnectionState
from cairn_client.policy.policy import Policy
from cairn_client.policy.settings import PolicySettings
from cairn_client.policy.types import Approval, Verdict
from cairn_client.session import ClientSession, Endpoint
from cairn_client.tools.base import PreparedCall, ToolOutcome
from cairn_client.tools.sandbox import Sandbox
from cairn_client.workspace import detect_workspace
from cairn_fakes.runner import FakeModelServer
from cairn_fakes.script import Script
from cairn_protocol import RunFinished, ServerFrame, StepFinished
from cairn_server.api.background import BackgroundServer
from cairn_server.config import ServerSettings

HELPERS = 4
READS = 5  # per helper
LATENCY_S = 0.5  # per model answer in the second round (hosted models: 0.5-5 s)
TOKEN = "cairn_bench_token_0123456789"
FILE_LINES = 150


@dataclass
class Listener:
    """Records the parent's run end and last context size; allows what the policy asks."""

    finished: asyncio.Event = field(default_factory=asyncio.Event)
    welcomed: asyncio.Event = field(default_factory=asyncio.Event)
    context_tokens: int = 0
    run: RunFinished | None = None

    def server_event(self, event: ServerFrame) -> None:
        if event.type == "welcome":
            self.welcomed.set()
        if isinstance(event, StepFinished):  # the parent's own steps (a helper's stay in its hub)
            self.context_tokens = event.context_tokens
        if isinstance(event, RunFinished):
            self.run = event
            self.finished.set()

    def connection_changed(self, state: ConnectionState, detail: str) -> None:
        pass

    def tool_handled(self, prepared: PreparedCall, verdict: Verdict, outcome: ToolOutcome) -> None:
        pass

    async def ask_approval(self, prepared: PreparedCall, verdict: Verdict) -> Approval:
        return Approval("once")

    def notice(self, text: str) -> None:
        pass


def make_repo(folder: Path) -> Path:
    repo = folder / "repo"
    repo.mkdir()
    for n in range(HELPERS * READS):
        lines = (f"def f{n}_{i}():\n    return {i}  # module {n}\n" for i in range(FILE_LINES))
        body = "".join(lines)
        (repo / f"m{n}.py").write_text(body)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@cairn.invalid"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    return repo


def read(n: int, delay: float) -> dict[str, Any]:
    return {"tool_calls": [{"name": "read", "arguments": {"path": f"m{n}.py"}}], "delay_s": delay}


def with_helpers(delay: float) -> Script:
    tasks = [
        {"name": "task", "arguments": {"prompt": f"Read part {h} and say what it defines."}}
        for h in range(HELPERS)
    ]
    turns: list[dict[str, Any]] = [{"tool_calls": tasks, "delay_s": delay}]
    turns += [read(n, delay) for n in range(HELPERS * READS)]  # whichever helper asks next
    turns += [{"text": "Defines f-functions.", "delay_s": delay} for _ in range(HELPERS)]
    turns.append({"text": "All parts define f-functions.", "delay_s": delay})
    return Script.from_dict({"turns": turns})


def alone(delay: float) -> Script:
    turns = [read(n, delay) for n in range(HELPERS * READS)]
    turns.append({"text": "All parts define f-functions.", "delay_s": delay})
    return Script.from_dict({"turns": turns})


async def one_run(url: str, repo: Path, data: Path, text: str) -> tuple[float, int, RunFinished]:
    """Wall seconds from the message to run_finished, the parent's last prompt tokens."""

    async def resolve() -> str:
        return url

    listener = Listener()
    policy = Policy(PolicySettings(), None, sandbox=Sandbox(None, environ={}))
    session = ClientSession(
        Endpoint(TOKEN, resolve),
        detect_workspace(repo, environ={}),
        policy,
        listener,
        "new",
        call_log=CallLog.in_data_dir(data, repo),
    )
    runner = asyncio.create_task(session.run())
    await asyncio.wait_for(listener.welcomed.wait(), 30)
    started = time.perf_counter()
    await session.send_user_message(text)
    await asyncio.wait_for(listener.finished.wait(), 300)
    wall = time.perf_counter() - started
    await session.close()
    await asyncio.wait_for(runner, 30)
    assert listener.run is not None and listener.run.stop_reason == "end_turn", listener.run
    return wall, listener.context_tokens, listener.run


def measure(delay: float) -> tuple[float, float, int, int, int]:
    with tempfile.TemporaryDirectory(prefix="cairn-bench-") as tmp, FakeModelServer() as fake:
        folder = Path(tmp)
        repo = make_repo(folder)
        env = {
            "CAIRN_MODEL": "openai/gpt-4o-mini",
            "OPENAI_API_KEY": "bench",
            "OPENAI_BASE_URL": fake.openai_base_url,
        }
        url = f"sqlite+aiosqlite:///{folder / 'cairn.db'}"
        settings = ServerSettings.from_env(env, database_url=url, bootstrap_token=TOKEN)
        with BackgroundServer(settings) as server:
            fake.set_script(with_helpers(delay))
            parallel = asyncio.run(one_run(server.url, repo, folder, "read every part"))
            fake.set_script(alone(delay))
            sequential = asyncio.run(one_run(server.url, repo, folder, "read every part"))
    helpers_wall, helpers_ctx, helpers_run = parallel
    alone_wall, alone_ctx, _ = sequential
    used = helpers_run.usage.input_tokens + helpers_run.usage.output_tokens
    return helpers_wall, alone_wall, helpers_ctx, alone_ctx, used


def main() -> None:
    print(f"{HELPERS} read-only helpers x {READS} reads each, against one run doing all reads")
    rows = {}
    for name, delay in (("instant", 0.0), (f"{LATENCY_S * 1000:.0f} ms model", LATENCY_S)):
        h_wall, a_wall, h_ctx, a_ctx, used = measure(delay)
        rows[name] = (h_wall, a_wall, h_ctx, a_ctx, used)
        print(
            f"  {name:>12}: helpers {h_wall:6.2f} s, alone {a_wall:6.2f} s "
            f"(wall ratio {a_wall / h_wall:4.2f}x); parent's last prompt {h_ctx:,} tokens with "
            f"helpers vs {a_ctx:,} alone; helpers' tokens counted in the parent: {used:,}"
        )
    h_wall, a_wall, h_ctx, a_ctx, _ = rows["instant"]
    lh_wall, la_wall, _, _, _ = rows[f"{LATENCY_S * 1000:.0f} ms model"]
    print(
        f"helpers={HELPERS} reads_each={READS} wall_ratio_instant={a_wall / h_wall:.2f} "
        f"wall_ratio_latency={la_wall / lh_wall:.2f} parent_prompt_tokens_helpers={h_ctx} "
        f"parent_prompt_tokens_alone={a_ctx} context_ratio={a_ctx / h_ctx:.2f}"
    )


if __name__ == "__main__":
    main()
