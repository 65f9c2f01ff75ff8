"""Tokens: what a 200-turn coding session costs in prompt tokens, against a naive agent.

Runs the real server (SQLite) with a scripted session over its websocket: 200 user turns
with reads, greps and test runs returning long outputs, and a memory edit every tenth turn.
The model is the fake OpenAI server, then the fake Anthropic server (summaries come from
the other fake, as CAIRN_SUMMARY_MODEL). Every figure is read from what the fake model
received, counted with the fake's tokenizer (cl100k):

- fixed overhead of the first request: instructions and tool schemas (memory blocks apart);
- input tokens per request over the session;
- prefix share: tokens of each request sitting in a prefix identical to the previous
  request's (what a provider cache can serve), and the cached tokens the fake reported;
- compactions;
- restart prefix share: a conversation of a few turns, then the server stopped and a new one
  started on the same database; the share of the new process's first request that sits in a
  prefix identical to the previous process's last request of the same conversation (counted
  in whole blocks, as above: what a provider cache could still serve after a restart); and
  the same for a new conversation of the same agent (as `cairn -p` starts one).

The baseline, computed in the same run from the same stored session, is a naive agent:
full history every time, memory rendered into the system prompt and rewritten on each edit.

    uv run python bench/tokens.py [--turns 200] [--budget 32000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cairn_fakes.prompt_cache import Prompt, anthropic_prompt, openai_prompt
from cairn_fakes.runner import FakeModelServer
from cairn_fakes.script import Script
from cairn_protocol import (
    PROTOCOL_VERSION,
    ContextCompacted,
    Hello,
    RunFinished,
    ToolRequest,
    ToolResult,
    UserMessage,
    WorkspaceIdentity,
    parse_server_frame,
)
from cairn_server.api.background import BackgroundServer
from cairn_server.config import ServerSettings
from cairn_server.context.compiler import INSTRUCTIONS
from cairn_server.context.memory_view import render_blocks
from cairn_server.storage.db import open_database
from cairn_server.storage.models import Block, BlockVersion, Message, RunStep
from cairn_server.storage.store import Store, to_model_message
from sqlmodel import col, select
from websockets.asyncio.client import ClientConnection, connect

TOKEN = "cairn_bench_token_0123456789"
WORKSPACE = WorkspaceIdentity(
    root_commit="b" * 40, origin="example.com/acme/shop", display_name="shop", path="/tmp/shop"
)
TOOLS = ["read", "grep", "glob", "edit", "apply_patch", "write", "shell"]
PROVIDERS = {
    # main model, summary model (served by the other fake, so scripts never interleave)
    "openai": ("openai/gpt-5.4-mini", "anthropic/claude-haiku-4-5"),
    "anthropic": ("anthropic/claude-sonnet-4-6", "openai/gpt-5.4-nano"),
}


# --------------------------------------------------------------------------- the session


def session_script(turns: int, first: int = 0) -> Script:
    """Per turn (from turn `first`): a plain answer, or a grep / read / shell first; every tenth
    turn the model also records a fact in its `project` memory."""
    scripted: list[dict[str, Any]] = []
    for k in range(first, first + turns):
        calls: list[dict[str, Any]] = []
        if k % 4 == 1:
            calls.append({"name": "grep", "arguments": {"pattern": f"cache_{k}"}})
        elif k % 4 == 2:
            calls.append({"name": "read", "arguments": {"path": f"src/shop/mod{k}.py"}})
        elif k % 4 == 3:
            calls.append({"name": "shell", "arguments": {"command": "pytest -q tests"}})
        if k % 10 == 5:
            fact = f"- mod{k}: caches prices per region; invalidate on currency change"
            calls.append({"name": "memory_insert", "arguments": {"label": "project", "text": fact}})
        if calls:
            scripted.append({"text": f"Let me check mod{k}.", "tool_calls": calls})
        scripted.append({"text": answer(k), "chunk_size": 64})
    return Script.from_dict({"turns": scripted})


def answer(k: int) -> str:
    return (
        f"mod{k} looks right: the price cache is keyed by (sku, region) and cleared by "
        f"`invalidate_prices()` when the currency table changes. The flaky test "
        f"`test_cache_{k}` races with the background refresher; pin the clock with "
        "`freeze_time` and it passes. I changed nothing yet."
    )


def user_text(k: int) -> str:
    return (
        f"Turn {k}: check the price cache in src/shop/mod{k}.py; test_cache_{k} fails "
        "now and then on CI. Is the invalidation right?"
    )


def tool_output(request: ToolRequest) -> str:
    if request.tool == "grep":
        return "\n".join(
            f"src/shop/mod{n}.py:{10 + n}:    cache_{n} = PriceCache(region=region)"
            for n in range(40)
        )
    if request.tool == "read":
        return "\n".join(
            f"{n:5}\t    price = self._cache.get((sku, region)) or self._load(sku, {n})"
            for n in range(1, 121)
        )
    return "\n".join(
        [f"tests/test_cache_{n}.py::test_refresh PASSED" for n in range(50)]
        + ["FAILED tests/test_cache_7.py::test_race - AssertionError: stale price", "1 failed"]
    )


@dataclass
class Session:
    compactions: list[ContextCompacted] = field(default_factory=list)
    finished: list[RunFinished] = field(default_factory=list)
    conversation_id: str = ""


async def drive(
    server_url: str, turns: int, conversation: str = "latest", first_turn: int = 0
) -> Session:
    session = Session()
    async with connect(server_url.replace("http://", "ws://") + "/v1/ws") as socket:
        hello = Hello(
            protocol_version=PROTOCOL_VERSION,
            token=TOKEN,
            workspace=WORKSPACE,
            tools=TOOLS,
            conversation=conversation,
        )
        await socket.send(hello.model_dump_json())
        welcome = parse_server_frame(await socket.recv())
        session.conversation_id = getattr(welcome, "conversation_id", "")
        for k in range(first_turn, first_turn + turns):
            await socket.send(UserMessage(text=user_text(k)).model_dump_json())
            await until_finished(socket, session)
    return session


async def until_finished(socket: ClientConnection, session: Session) -> None:
    while True:
        frame = parse_server_frame(await asyncio.wait_for(socket.recv(), 60))
        if isinstance(frame, ToolRequest):
            result = ToolResult(call_id=frame.call_id, status="ok", content=tool_output(frame))
            await socket.send(result.model_dump_json())
        elif isinstance(frame, ContextCompacted):
            session.compactions.append(frame)
        elif isinstance(frame, RunFinished):
            if frame.stop_reason != "end_turn":
                raise SystemExit(f"a run ended with {frame.stop_reason}: {frame.detail}")
            session.finished.append(frame)
            return


# --------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Figures:
    requests: int
    first_fixed: int  # instructions + tool schemas of the first request
    first_total: int
    inputs: list[int]
    prefix_share: float
    cached_share: float | None = None
    compactions: int = 0

    def line(self, name: str) -> str:
        cached = "" if self.cached_share is None else f", cached {self.cached_share:.1%}"
        return (
            f"  {name:<8} requests {self.requests:4}  input/request p50 "
            f"{statistics.median(self.inputs):8,.0f}  max {max(self.inputs):8,}  total "
            f"{sum(self.inputs):11,}  prefix share {self.prefix_share:.1%}{cached}"
        )


def prompt_of(provider: str, body: dict[str, Any]) -> Prompt:
    return openai_prompt(body) if provider == "openai" else anthropic_prompt(body)


def prefix_share(prompts: Sequence[Prompt]) -> float:
    """Share of all input tokens that sit in a prefix identical to the previous request's."""
    shared = 0
    for previous, prompt in zip(prompts, prompts[1:], strict=False):
        before = {key for key, _ in previous.prefixes()}
        shared += max((tokens for key, tokens in prompt.prefixes() if key in before), default=0)
    total = sum(p.tokens for p in prompts)
    return shared / total if total else 0.0


def fixed_overhead(provider: str, body: dict[str, Any]) -> int:
    """Instructions and tool schemas of a request, without memory, summary or messages."""
    tools = prompt_of(provider, {"tools": body.get("tools") or []}).tokens
    system = body["messages"][0]["content"] if provider == "openai" else body["system"]
    text = system if isinstance(system, str) else "\n".join(b["text"] for b in system)
    instructions = {"role": "system", "content": text.split("<memory_blocks>")[0]}
    return tools + prompt_of("openai", {"messages": [instructions]}).tokens


def ours(provider: str, bodies: Sequence[dict[str, Any]], steps: Sequence[RunStep]) -> Figures:
    prompts = [prompt_of(provider, body) for body in bodies]
    inputs = [p.tokens for p in prompts]
    reported = sum(s.input_tokens for s in steps)
    return Figures(
        requests=len(bodies),
        first_fixed=fixed_overhead(provider, bodies[0]),
        first_total=inputs[0],
        inputs=inputs,
        prefix_share=prefix_share(prompts),
        cached_share=sum(s.cached_input_tokens for s in steps) / reported if reported else 0.0,
    )


async def naive(
    database_url: str, conversation_id: str, times: Sequence[datetime], tools: list[Any]
) -> Figures:
    """The same requests as a naive agent would send them: every stored message so far, and
    the memory blocks as they stood, rewritten into the system prompt."""
    db = await open_database(database_url)
    try:
        store = Store(db)
        messages = await store.list_messages(conversation_id)
        conversation = await store.get_conversation(conversation_id)
        assert conversation is not None
        agent = await store.get_agent(conversation.agent_id)
        assert agent is not None
        async with db.session(read_only=True) as session:
            versions = list((await session.exec(select(BlockVersion))).all())
    finally:
        await db.close()
    prompts = []
    for moment in times:
        system = INSTRUCTIONS.format(workspace=agent.display_name)
        system += "\n\n" + render_blocks(blocks_at(versions, moment))
        history = [openai_message(m) for m in messages if m.created_at <= moment]
        body = {"tools": tools, "messages": [{"role": "system", "content": system}, *history]}
        prompts.append(openai_prompt(body))
    inputs = [p.tokens for p in prompts]
    return Figures(
        requests=len(prompts),
        first_fixed=0,
        first_total=inputs[0],
        inputs=inputs,
        prefix_share=prefix_share(prompts),
    )


def blocks_at(versions: Sequence[BlockVersion], moment: datetime) -> list[Block]:
    latest: dict[str, BlockVersion] = {}
    for version in sorted(versions, key=lambda v: v.version):
        if version.created_at <= moment:
            latest[version.label] = version
    return [
        Block(agent_id=v.agent_id, label=v.label, description=v.description, value=v.value)
        for v in sorted(latest.values(), key=lambda v: v.id or 0)
        if v.action != "delete"
    ]


def openai_message(message: Message) -> dict[str, Any]:
    model = to_model_message(message)
    wire: dict[str, Any] = {"role": model.role, "content": model.content}
    if model.tool_calls:
        wire["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in model.tool_calls
        ]
    if model.tool_call_id:
        wire["tool_call_id"] = model.tool_call_id
    return wire


async def steps_of(database_url: str) -> list[RunStep]:
    db = await open_database(database_url)
    try:
        async with db.session(read_only=True) as session:
            return list((await session.exec(select(RunStep).order_by(col(RunStep.id)))).all())
    finally:
        await db.close()


# --------------------------------------------------------------------------- restarts

# Turns the first process runs (none edits memory: an edit rightly changes the memory a new
# conversation is shown), then each later process runs one.
RESTART_TURNS = 4


@dataclass(frozen=True)
class RestartFigures:
    same_conversation: float  # share of the new process's first request, same conversation
    new_conversation: float  # the same for a new conversation of the same agent


def common_prefix_share(previous: Prompt, first: Prompt) -> float:
    """Tokens of `first` in a prefix identical to `previous`'s, as a share of `first`'s: whole
    blocks (a tool, the system prompt, a message), as a provider's cache serves them."""
    before = {key for key, _ in previous.prefixes()}
    shared = max((tokens for key, tokens in first.prefixes() if key in before), default=0)
    return shared / first.tokens if first.tokens else 0.0


def restart_run(
    provider: str, database_url: str, conversation: str, turns: int, first_turn: int
) -> tuple[str, list[dict[str, Any]]]:
    """One server process on the database: `turns` turns of `conversation`; the conversation's
    id and the bodies the model received."""
    model, _ = PROVIDERS[provider]
    with FakeModelServer() as fake:
        fake.set_script(session_script(turns, first_turn))
        settings = ServerSettings.from_env(
            model_env(model, fake, fake), database_url=database_url, bootstrap_token=TOKEN
        )
        with BackgroundServer(settings) as server:
            session = asyncio.run(drive(server.url, turns, conversation, first_turn))
        return session.conversation_id, [r.body for r in fake.requests]


def run_restarts(provider: str, folder: Path) -> RestartFigures:
    """A conversation in one process; then, each in a fresh process on the same database, one
    more turn of it and one turn of a new conversation."""
    database_url = f"sqlite+aiosqlite:///{folder / f'{provider}-restart.db'}"
    conversation_id, before = restart_run(provider, database_url, "new", RESTART_TURNS, 0)
    _, same = restart_run(provider, database_url, conversation_id, 1, RESTART_TURNS)
    _, new = restart_run(provider, database_url, "new", 1, RESTART_TURNS + 1)
    last = prompt_of(provider, before[-1])
    figures = RestartFigures(
        same_conversation=common_prefix_share(last, prompt_of(provider, same[0])),
        new_conversation=common_prefix_share(last, prompt_of(provider, new[0])),
    )
    print(
        f"  after a server restart, the first request shares {figures.same_conversation:.1%} "
        f"with the previous process's last (same conversation), {figures.new_conversation:.1%} "
        "(a new conversation of the same agent)"
    )
    return figures


# --------------------------------------------------------------------------- main


def model_env(
    model: str, openai_fake: FakeModelServer, anthropic_fake: FakeModelServer
) -> dict[str, str]:
    """The server's model variables: `model`, served by the fakes."""
    return {
        "CAIRN_MODEL": model,
        "OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": openai_fake.openai_base_url,
        "ANTHROPIC_API_KEY": "bench",
        "ANTHROPIC_BASE_URL": anthropic_fake.anthropic_base_url,
    }


def run_provider(provider: str, turns: int, budget: int, folder: Path) -> tuple[Figures, Figures]:
    model, summary_model = PROVIDERS[provider]
    database_url = f"sqlite+aiosqlite:///{folder / f'{provider}.db'}"
    with FakeModelServer() as fake, FakeModelServer() as summaries:
        fake.set_script(session_script(turns))
        summaries.set_script(
            Script.from_dict({"turns": [{"text": summary(n)} for n in range(turns)]})
        )
        main_fake, summary_fake = (fake, summaries)
        openai_fake = main_fake if provider == "openai" else summary_fake
        anthropic_fake = summary_fake if provider == "openai" else main_fake
        settings = ServerSettings.from_env(
            {
                **model_env(model, openai_fake, anthropic_fake),
                "CAIRN_SUMMARY_MODEL": summary_model,
            },
            database_url=database_url,
            bootstrap_token=TOKEN,
            context_budget=budget,
            step_limit=10,
        )
        clock = datetime.now(UTC) - timedelta(seconds=time.perf_counter())
        started = time.perf_counter()
        with BackgroundServer(settings) as server:
            session = asyncio.run(drive(server.url, turns))
        elapsed = time.perf_counter() - started
        requests = fake.requests
    bodies = [r.body for r in requests]
    times = [clock + timedelta(seconds=r.received_at) for r in requests]
    steps = asyncio.run(steps_of(database_url))
    figures = ours(provider, bodies, steps)
    figures = Figures(**{**figures.__dict__, "compactions": len(session.compactions)})
    baseline = asyncio.run(naive(database_url, session.conversation_id, times, tools_of(bodies[0])))
    print(
        f"{provider}: {turns} turns, {len(bodies)} model requests in {elapsed:.0f} s, "
        f"budget {budget:,}, {len(session.compactions)} compactions "
        f"({sum(c.method == 'summary' for c in session.compactions)} summarised)"
    )
    print(
        f"  fixed overhead of the first request (instructions + tool schemas): "
        f"{figures.first_fixed:,} tokens; whole first request {figures.first_total:,}"
    )
    print(figures.line("cairn"))
    print(baseline.line("naive"))
    print("  input tokens per request over the session (every 10%):")
    print("    cairn " + sparkline(figures.inputs))
    print("    naive " + sparkline(baseline.inputs))
    return figures, baseline


def tools_of(body: dict[str, Any]) -> list[Any]:
    """The request's tools in OpenAI's wire form (the naive baseline is counted as OpenAI)."""
    tools = body.get("tools") or []
    if tools and "function" in tools[0]:
        return list(tools)
    return [
        {
            "type": "function",
            "function": {
                "name": t["name"],
                "description": t.get("description", ""),
                "parameters": t.get("input_schema", {}),
            },
        }
        for t in tools
    ]


def summary(n: int) -> str:
    return (
        f"Summary {n}. Goals: review the price cache modules one by one; fix the flaky "
        "test_cache_* tests. Decisions: keep the (sku, region) key; pin the clock in tests. "
        "Identifiers: src/shop/mod*.py, invalidate_prices(), PriceCache, freeze_time. "
        "Errors: tests/test_cache_7.py::test_race stale price (open). Search hints: "
        "'test_race', 'invalidate_prices', 'freeze_time'."
    )


def sparkline(values: Sequence[int]) -> str:
    points = [values[min(len(values) - 1, len(values) * p // 10)] for p in range(11)]
    return " ".join(f"{v:,}" for v in points)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--budget", type=int, default=32_000)
    args = parser.parse_args()
    pairs: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cairn-tokens-") as tmp:
        for provider in PROVIDERS:
            ours_figures, naive_figures = run_provider(provider, args.turns, args.budget, Path(tmp))
            restarts = run_restarts(provider, Path(tmp))
            short = provider[:2] if provider == "openai" else "an"
            pairs += [
                f"{short}_fixed_overhead={ours_figures.first_fixed}",
                f"{short}_input_p50={statistics.median(ours_figures.inputs):.0f}",
                f"{short}_input_max={max(ours_figures.inputs)}",
                f"{short}_input_total={sum(ours_figures.inputs)}",
                f"{short}_prefix_share={ours_figures.prefix_share:.3f}",
                f"{short}_cached_share={ours_figures.cached_share or 0:.3f}",
                f"{short}_compactions={ours_figures.compactions}",
                f"{short}_naive_input_max={max(naive_figures.inputs)}",
                f"{short}_naive_input_total={sum(naive_figures.inputs)}",
                f"{short}_naive_prefix_share={naive_figures.prefix_share:.3f}",
                f"{short}_restart_prefix_share={restarts.same_conversation:.3f}",
                f"{short}_new_conversation_prefix_share={restarts.new_conversation:.3f}",
            ]
    print(f"budget={args.budget} turns={args.turns} " + " ".join(pairs))


if __name__ == "__main__":
    main()
