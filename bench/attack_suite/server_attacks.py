"""Attacks on the server and on the client–server contract: protocol, storage, multi-client.

- protocol: raw websocket frames a broken or hostile client sends (malformed JSON, unknown
  types, binary frames, NUL bytes, a huge frame, a client that never reads), REST parameters
  (huge integers, NUL), and tokens (listed without their secret, revoked, expired);
- storage: the client data dir's files are private (cairn.db, call-log.sqlite3, local-token),
  and PostgreSQL keeps any text (NUL in a tool result, a user message, a hello, a memory edit);
- multi-client: two clones of one repository on one shared server run a tool request once,
  a kill -9 of the server or the client never makes the model believe a command that ran did
  not, Esc during an approved command is honest, and the approval screen offers `p` only
  where a rule could really stop the asking.

Each attack is a small function returning why it got through (or None); tables list them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from attack_suite.core import Family, Outcome
from attack_suite.lab import Lab, ServerProcess, call, tool_results_in_order, wait_for
from attack_suite.wire import Answer, Tmux, Wire, first_answer, hello

PG_ADMIN_URL = os.environ.get("CAIRN_ATTACK_PG", "postgresql://postgres@127.0.0.1:5432/test")
NUL = "a\0b"
Attack = Callable[[Lab, ServerProcess], Awaitable[str | None]]


def _frame_not_drop(answer: Answer, what: str) -> str | None:
    """An error frame (a code the client can show) is right; a silent close or silence not."""
    if answer.type == "error":
        return None
    return f"{what}: {answer.describe()}"


# --------------------------------------------------------------------------- protocol: frames


async def _before_hello(lab: Lab, server: ServerProcess, payload: str | bytes) -> str | None:
    return _frame_not_drop(await first_answer(server.url, payload), "first frame")


async def _after_welcome(lab: Lab, server: ServerProcess, payload: str | bytes) -> str | None:
    token = server.token("wire")
    wire = await Wire.open(server.url)
    try:
        if not await wire.welcomed(token):
            return "no welcome for a good hello"
        await wire.send(payload)
        why = _frame_not_drop(await wire.answer(), "after welcome")
        if why is None and not await _alive(wire):
            return "the connection died after the error frame"
        return why
    finally:
        await wire.close()


async def _alive(wire: Wire) -> bool:
    await wire.send({"type": "ping", "nonce": "still-there"})
    return (await wire.until("pong", timeout=10)).type == "pong"


def _frame_attack(payload: str | bytes, after_welcome: bool) -> Attack:
    async def attack(lab: Lab, server: ServerProcess) -> str | None:
        run = _after_welcome if after_welcome else _before_hello
        return await run(lab, server, payload)

    return attack


async def nul_in_hello(lab: Lab, server: ServerProcess) -> str | None:
    answer = await first_answer(server.url, hello(server.token("wire"), client_name=NUL))
    if answer.type in ("welcome", "error"):
        return None
    return f"hello with NUL: {answer.describe()}"


async def nul_in_user_message(lab: Lab, server: ServerProcess) -> str | None:
    lab.fake.set_script(_texts("Seen."))
    token = server.token("wire")
    wire = await Wire.open(server.url)
    try:
        if not await wire.welcomed(token):
            return "no welcome for a good hello"
        await wire.send({"type": "user_message", "text": f"look at {NUL}"})
        answer = await wire.until("run_finished", "error", timeout=30)
        if answer.type != "run_finished":
            return f"user message with NUL: {answer.describe()}"
        stop = answer.frame.get("stop_reason") if answer.frame else None
        return None if stop == "end_turn" else f"the run ended {stop!r}"
    finally:
        await wire.close()


async def huge_frame(lab: Lab, server: ServerProcess) -> str | None:
    """32 MB in one frame: refused (error frame or a 1009 close), and the server lives on."""
    token = server.token("wire")
    wire = await Wire.open(server.url)
    try:
        await wire.welcomed(token)
        await wire.send('{"type": "user_message", "text": "' + "x" * 32_000_000 + '"}')
        answer = await wire.answer(timeout=30)
    finally:
        await wire.close()
    fresh = await Wire.open(server.url)
    try:
        if not await fresh.welcomed(token):
            return "the server stopped answering after a huge frame"
    finally:
        await fresh.close()
    if answer.type == "error" or answer.close_code == 1009:
        return None
    return f"a 32 MB frame: {answer.describe()}"


async def slow_consumer(lab: Lab, server: ServerProcess) -> str | None:
    """A client that never reads while a long answer streams to it: the server neither holds
    it all in memory nor stops answering everyone else."""
    assert server.process is not None
    lab.fake.set_script(_texts("word " * 800_000, chunk_size=64))
    token = server.token("slow")
    server.token("bystander")  # made now: making one takes seconds
    before = peak = _rss_mb(server.process.pid)
    answered = len(lab.fake.answer_times)
    slowest = 0.0
    wire = await Wire.open(server.url)
    try:
        await wire.welcomed(token)
        await wire.send({"type": "user_message", "text": "write a lot"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the fake streams 62,500 deltas; watch meanwhile
            slowest = max(slowest, await asyncio.to_thread(_rest_latency, server))
            peak = max(peak, _rss_mb(server.process.pid))
            if len(lab.fake.answer_times) > answered:
                break
            await asyncio.sleep(0.5)
    finally:
        wire.socket.transport.abort()
    recovered = await asyncio.to_thread(
        wait_for, lambda: _rest_latency(server) < REST_PATIENCE_S, 60, 1.0
    )
    if not recovered:
        return "the server stopped answering others for a minute after a client that does not read"
    if slowest >= REST_PATIENCE_S:
        return f"another client waited {slowest:.0f} s for an answer while one did not read"
    grew = peak - before
    return (
        f"the server grew by {grew:.0f} MB for one client that does not read"
        if grew > 100
        else None
    )


REST_PATIENCE_S = 5.0


def _rest_latency(server: ServerProcess) -> float:
    """Seconds a REST call takes (REST_PATIENCE_S when it takes that long or fails)."""
    started = time.monotonic()
    try:
        with _rest(server, "bystander") as api:
            api.get("/agents", timeout=REST_PATIENCE_S).raise_for_status()
    except httpx.HTTPError:
        return REST_PATIENCE_S
    return time.monotonic() - started


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _texts(*texts: str, chunk_size: int = 8) -> Any:
    from cairn_fakes.script import Script

    return Script.from_dict({"turns": [{"text": t, "chunk_size": chunk_size} for t in texts]})


# --------------------------------------------------------------------------- protocol: REST


def _rest(server: ServerProcess, user: str = "rest") -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.token(user)}"}
    return httpx.Client(base_url=server.url + "/v1", headers=headers, timeout=30)


def _agent_id(api: httpx.Client) -> str:
    workspace = {
        "root_commit": "f" * 40,
        "origin": "example.com/attacks/rest",
        "display_name": "rest",
        "path": "/nowhere/rest",
    }
    made = api.post("/agents", json=workspace)
    made.raise_for_status()
    return str(made.json()["id"])


BIG = str(10**30)
# (name, method, path with {agent}, query or JSON body): none may answer 500.
REST_PROBES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("huge limit", "GET", "/agents/{agent}/passages", {"params": {"limit": BIG}}),
    ("huge offset", "GET", "/agents/{agent}/passages", {"params": {"offset": BIG}}),
    ("negative limit", "GET", "/agents/{agent}/passages", {"params": {"limit": "-5"}}),
    ("NUL in a search query", "GET", "/agents/{agent}/messages/search", {"params": {"query": NUL}}),
    ("NUL in a passage query", "GET", "/agents/{agent}/passages", {"params": {"query": NUL}}),
    ("NUL in an agent id", "GET", "/agents/a%00b", {}),
    ("huge int in a path", "GET", f"/runs/{BIG}", {}),
    ("huge context budget", "PATCH", "/agents/{agent}", {"json": {"context_budget": 10**30}}),
    ("NUL in a block label", "GET", "/agents/{agent}/blocks/a%00b", {}),
    ("huge version number", "GET", "/agents/{agent}/blocks/project/versions/" + BIG, {}),
    ("NUL in a new passage", "POST", "/agents/{agent}/passages", {"json": {"text": NUL}}),
    ("NUL in a block value", "PATCH", "/agents/{agent}/blocks/human", {"json": {"value": NUL}}),
]


def _rest_attack(method: str, path: str, options: dict[str, Any]) -> Attack:
    async def attack(lab: Lab, server: ServerProcess) -> str | None:
        def probe() -> str | None:
            with _rest(server) as api:
                url = path.replace("{agent}", _agent_id(api))
                answer = api.request(method, url, **options)
            if answer.status_code >= 500:
                return f"{method} {path}: {answer.status_code} {answer.text[:80]}"
            return None

        return await asyncio.to_thread(probe)

    return attack


# --------------------------------------------------------------------------- protocol: tokens


async def tokens_listed_without_secret(lab: Lab, server: ServerProcess) -> str | None:
    value = server.token("listed")
    listed = server.command("tokens", "list")
    if listed.returncode != 0:
        return f"`cairn-server tokens list` failed: {listed.stderr.strip()[:120]}"
    if value in listed.stdout:
        return "the list shows a token's secret"
    return None if "listed" in listed.stdout else "the token is not listed"


async def revoked_token_refused(lab: Lab, server: ServerProcess) -> str | None:
    value = server.token("revoked")
    revoked = server.command("tokens", "revoke", value)
    if revoked.returncode != 0:
        return f"`cairn-server tokens revoke` failed: {revoked.stderr.strip()[:120]}"
    answer = await first_answer(server.url, hello(value))
    if answer.type == "welcome":
        return "a revoked token was welcomed"
    status = await asyncio.to_thread(_rest_status, server, value)
    return None if status == 401 else f"REST answered {status} to a revoked token"


def _rest_status(server: ServerProcess, token: str) -> int:
    with httpx.Client(base_url=server.url + "/v1", timeout=30) as api:
        return api.get("/agents", headers={"Authorization": f"Bearer {token}"}).status_code


EXPIRY_S = 60.0  # the shortest lifetime `create-token --expires-in` takes (1m)


def make_expiring_token(lab: Lab) -> None:
    """Made before everything else runs, so it has expired when the protocol attacks end."""
    server = _protocol_server(lab)
    made = server.command("create-token", "expiring", "--expires-in", "1m")
    lab.notes["expiring"] = (
        made.stdout.strip() if made.returncode == 0 else "",
        time.monotonic(),
        made.stderr.strip()[:120],
    )


async def expired_token_refused(lab: Lab, server: ServerProcess) -> str | None:
    value, made_at, error = lab.notes.get("expiring") or ("", 0.0, "not made")
    if not value:
        return f"`cairn-server create-token --expires-in 1m` failed: {error}"
    await asyncio.sleep(max(0.0, made_at + EXPIRY_S + 1 - time.monotonic()))
    answer = await first_answer(server.url, hello(value))
    return "an expired token was welcomed" if answer.type == "welcome" else None


PROTOCOL: list[tuple[str, Attack]] = [
    ("malformed JSON before hello", _frame_attack("{not json", after_welcome=False)),
    ("unknown frame type before hello", _frame_attack('{"type": "launch"}', after_welcome=False)),
    ("binary frame before hello", _frame_attack(b"\x00\x01binary", after_welcome=False)),
    ("hello missing fields", _frame_attack('{"type": "hello"}', after_welcome=False)),
    ("NUL in hello", nul_in_hello),
    ("malformed JSON after welcome", _frame_attack("{not json", after_welcome=True)),
    ("unknown frame type after welcome", _frame_attack('{"type": "launch"}', after_welcome=True)),
    ("binary frame after welcome", _frame_attack(b"\x00\x01binary", after_welcome=True)),
    ("JSON that is not an object", _frame_attack("[1, 2, 3]", after_welcome=True)),
    (
        "tool_result for an unknown call",
        _frame_attack(
            '{"type": "tool_result", "call_id": "nope", "status": "ok"}', after_welcome=True
        ),
    ),
    ("NUL in a user message", nul_in_user_message),
    ("a 32 MB frame", huge_frame),
    ("a client that never reads", slow_consumer),
    *[
        (f"REST: {name}", _rest_attack(method, path, options))
        for name, method, path, options in REST_PROBES
    ],
    ("tokens are listed, never their secret", tokens_listed_without_secret),
    ("a revoked token is refused", revoked_token_refused),
    ("an expired token is refused", expired_token_refused),  # last: it waits for the expiry
]


# The --quick subset (what CI runs): a few attacks of each table.
QUICK = frozenset(
    {
        "malformed JSON before hello",
        "binary frame after welcome",
        "NUL in a user message",
        "REST: huge limit",
        "client data files are private",
        "one tool request, one executor (two clones, a TUI idle)",
    }
)


def _picked(table: list[tuple[str, Attack]], quick: bool) -> list[tuple[str, Attack]]:
    return [(n, a) for n, a in table if not quick or n in QUICK]


def _protocol_server(lab: Lab) -> ServerProcess:
    if "protocol" not in lab.notes:
        lab.notes["protocol"] = lab.start_server(f"sqlite+aiosqlite:///{lab.root / 'protocol.db'}")
    server: ServerProcess = lab.notes["protocol"]
    return server


def _run_table(
    category: str, table: list[tuple[str, Attack]], lab: Lab, server: ServerProcess
) -> list[Outcome]:
    outcomes = []
    for name, attack in _picked(table, lab.quick):
        try:
            failure = asyncio.run(asyncio.wait_for(attack(lab, server), 150))
        except Exception as exc:  # an attack that breaks the connection oddly is a finding too
            failure = f"{type(exc).__name__}: {str(exc)[:160]}"
        outcomes.append(Outcome(category, name, failure))
        if server.process is not None and server.process.poll() is not None:
            server.start()  # a crash is this attack's failure, not every later one's
            outcomes[-1] = Outcome(category, name, f"the server died ({failure})")
    return outcomes


# --------------------------------------------------------------------------- storage


async def private_files(lab: Lab, server: ServerProcess) -> str | None:
    """A first `cairn -p` with a fresh data dir: its files are readable by the user only."""
    return await asyncio.to_thread(_private_files, lab)


def _private_files(lab: Lab) -> str | None:
    data = lab.root / "fresh-data"
    workspace = lab.workspace("file-modes")
    # One executed call, so the call log exists too.
    lab.set_turns({"tool_calls": [call("shell", command="true")]}, {"text": "Hello."})
    done = lab.cairn(workspace, {"CAIRN_DATA_DIR": str(data)}, "-p", "hi", "--approve", "all")
    if done.returncode != 0:
        return f"cairn -p failed: {done.stderr[-200:]}"
    wanted = ["cairn.db", "call-log.sqlite3", "local-token"]
    missing = [name for name in wanted if not (data / name).exists()]
    files = [p for p in data.rglob("*") if p.is_file()]
    open_to_others = [
        f"{p.relative_to(data)} {stat.S_IMODE(p.stat().st_mode):o}"
        for p in files
        if stat.S_IMODE(p.stat().st_mode) & 0o077
    ]
    if open_to_others:
        return "readable by others: " + ", ".join(open_to_others)
    return f"not found: {missing}" if missing else None


def _pg_database(lab: Lab) -> str | None:
    """A fresh PostgreSQL database for this run (dropped when the lab closes), or None."""
    import asyncpg  # type: ignore[import-untyped]

    name = f"cairn_attacks_{secrets.token_hex(4)}"

    async def create() -> None:
        connection = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    try:
        asyncio.run(create())
    except Exception:
        return None
    lab.cleanups.append(lambda: asyncio.run(_drop_database(name)))
    return (
        PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        + "/"
        + name
    )


async def _drop_database(name: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def nul_tool_result(lab: Lab, server: ServerProcess) -> str | None:
    """`printf 'a\\0b'` as a tool result: the run goes on and ends (it hung on PostgreSQL)."""
    workspace = lab.workspace("nul-result")
    env = {"CAIRN_SERVER_URL": server.url, "CAIRN_TOKEN": server.token("nul")}
    transcript = await asyncio.to_thread(
        lab.run_cairn,
        workspace,
        "bypass",
        [call("shell", command="printf 'a\\0b'")],
        extra_env=env,
        timeout=90,
    )
    if transcript.exit_code != 0:
        return f"the run did not end well (exit {transcript.exit_code}): {transcript.stderr[-160:]}"
    return None if transcript.results else "the model never got the result"


STORAGE_PG: list[tuple[str, Attack]] = [
    ("PostgreSQL: NUL in a tool result", nul_tool_result),
    ("PostgreSQL: NUL in a user message", nul_in_user_message),
    ("PostgreSQL: NUL in hello", nul_in_hello),
    *[
        (f"PostgreSQL REST: {name}", _rest_attack(method, path, options))
        for name, method, path, options in REST_PROBES
        if "NUL" in name
    ],
]


def storage_run(lab: Lab) -> list[Outcome]:
    outcomes = _run_table(
        "storage", [("client data files are private", private_files)], lab, _protocol_server(lab)
    )
    if lab.quick:
        return outcomes
    url = _pg_database(lab)
    if url is None:
        why = f"PostgreSQL is not reachable at {PG_ADMIN_URL} (set CAIRN_ATTACK_PG)"
        return outcomes + [Outcome("storage", name, why) for name, _ in STORAGE_PG]
    return outcomes + _run_table("storage", STORAGE_PG, lab, lab.start_server(url))


# --------------------------------------------------------------------------- multi-client


def _clone(lab: Lab, source: Path, name: str) -> Path:
    target = lab.root / name
    lab.git(lab.root, "clone", "-q", str(source), str(target))
    return target


def _tui(lab: Lab, workspace: Path, env: dict[str, str], approve: str | None) -> Tmux:
    argv = [sys.executable, "-m", "cairn_client.cli"] + (["--approve", approve] if approve else [])
    tui = Tmux.start(workspace, argv, {**lab.cairn_env(env), "TERM": "xterm-256color"})
    if not wait_for(lambda: "connected" in tui.screen().lower(), 60):
        screen = tui.screen()
        tui.kill()
        raise RuntimeError(f"the TUI did not connect: {screen[-300:]}")
    return tui


async def one_executor(lab: Lab, server: ServerProcess) -> str | None:
    """A TUI idle in one clone, a headless run in another: `pwd >> file` runs once, there."""
    first = lab.workspace("executor")
    second = _clone(lab, first, "executor-clone")
    env = {"CAIRN_SERVER_URL": server.url, "CAIRN_TOKEN": server.token("two-clones")}
    lab.fake.set_script(_texts("Hello."))
    await asyncio.to_thread(lab.cairn, first, env, "-p", "hi")  # the conversation both share
    tui = await asyncio.to_thread(_tui, lab, first, env, "all")
    try:
        transcript = await asyncio.to_thread(
            _continue, lab, second, env, [call("shell", command="pwd >> executed.txt")]
        )
        await asyncio.sleep(2)
    finally:
        tui.kill()
    ran_in = [w.name for w in (first, second) if (w / "executed.txt").exists()]
    if ran_in != [second.name]:
        return f"the call ran in {ran_in or 'no clone'} (expected only the headless one)"
    return None if transcript else "no answer"


def _continue(
    lab: Lab, workspace: Path, env: dict[str, str], calls: list[dict[str, Any]], mode: str = "all"
) -> str:
    """`cairn -p --continue` making `calls`; what the model was told for the first one."""
    lab.set_turns({"tool_calls": calls}, {"text": "Done."})
    done = lab.cairn(workspace, env, "-p", "go on", "--continue", "--approve", mode)
    messages = lab.fake.requests[-1].body.get("messages", []) if lab.fake.requests else []
    results = tool_results_in_order(messages)
    return results[-1] if results else done.stderr[-200:]


_NOT_RUN_WORDS = ("denied", "not run", "not executed", "never ran")


def _claims_not_run(text: str) -> str | None:
    lowered = text.lower()
    word = next((w for w in _NOT_RUN_WORDS if w in lowered), None)
    return f"the model was told it did not run ({word}): {text[:140]!r}" if word else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def server_killed_mid_command(lab: Lab, server: ServerProcess) -> str | None:
    """kill -9 of the server while a command runs; the command completes; after the restart
    the model must not be told it did not run."""
    database = f"sqlite+aiosqlite:///{lab.root / 'killed.db'}"
    crashing = lab.start_server(database, port=_free_port())  # the same port after a restart
    workspace = lab.workspace("server-killed")
    env = {"CAIRN_SERVER_URL": crashing.url, "CAIRN_TOKEN": crashing.token("killed")}
    command = "touch started.txt; sleep 3; echo ran > ran.txt"

    lab.set_turns(
        {"tool_calls": [call("shell", command=command)]}, {"text": "Done."}, {"text": "Done."}
    )
    headless = await asyncio.to_thread(_run_it_approved, lab, workspace, env)
    try:
        if not await _appears(workspace / "started.txt", 60):
            return "the command never started"
        crashing.kill()
        await _appears(workspace / "ran.txt", 10)
        crashing.start()
        await asyncio.to_thread(headless.wait, 90)
    finally:
        if headless.poll() is None:
            headless.kill()
    if not (workspace / "ran.txt").exists():
        return "the command did not complete (it should, the client was alive)"
    return await asyncio.to_thread(_told_it_did_not_run, lab, workspace, env)


def _run_it_approved(lab: Lab, workspace: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`cairn -p "run it" --approve all`, left running."""
    return lab.start_cairn(workspace, env, "-p", "run it", "--approve", "all")


async def _appears(path: Path, timeout_s: float) -> bool:
    return await asyncio.to_thread(wait_for, path.exists, timeout_s)


def _told_it_did_not_run(lab: Lab, workspace: Path, env: dict[str, str]) -> str | None:
    """Why the model's record of the first call says it did not run, or None."""
    told = _told_after(lab, workspace, env)
    if os.environ.get("ATTACK_DEBUG"):
        print(f"    told: {told!r}", file=sys.stderr)
    return _claims_not_run(told)


def _told_after(lab: Lab, workspace: Path, env: dict[str, str]) -> str:
    """A follow-up `cairn -p --continue`: what the model's history says of the first call."""
    lab.fake.set_script(_texts("Understood."))
    lab.cairn(workspace, env, "-p", "what happened?", "--continue")
    messages = lab.fake.requests[-1].body.get("messages", []) if lab.fake.requests else []
    results = tool_results_in_order(messages)
    return results[0] if results else "(no record of the call)"


async def client_killed_mid_command(lab: Lab, server: ServerProcess) -> str | None:
    """kill -9 of `cairn` once its command has done its work: the model is not told it did
    not run."""
    workspace = lab.workspace("client-killed")
    env = {"CAIRN_SERVER_URL": server.url, "CAIRN_TOKEN": server.token("client-killed")}

    lab.set_turns(
        {"tool_calls": [call("shell", command="echo ran > ran.txt; sleep 5")]}, {"text": "Done."}
    )
    headless = await asyncio.to_thread(_run_it_approved, lab, workspace, env)
    try:
        if not await _appears(workspace / "ran.txt", 60):
            return "the command never ran"
        headless.kill()
        headless.wait(10)
    finally:
        if headless.poll() is None:
            headless.kill()
    return await asyncio.to_thread(_told_it_did_not_run, lab, workspace, env)


async def esc_during_command(lab: Lab, server: ServerProcess) -> str | None:
    """Esc while an approved command runs: it is stopped, or the user is not told it was."""
    workspace = lab.workspace("esc")
    env = {"CAIRN_SERVER_URL": server.url, "CAIRN_TOKEN": server.token("esc")}
    from cairn_fakes.script import Script

    command = "touch started.txt; sleep 4; echo late > late.txt"
    lab.fake.set_script(
        Script.from_dict(
            {"turns": [{"tool_calls": [call("shell", command=command)]}, {"text": "Done."}]}
        )
    )
    tui = await asyncio.to_thread(_tui, lab, workspace, env, None)
    try:
        tui.keys("run the slow command", "Enter")
        if not await asyncio.to_thread(wait_for, lambda: "Allow once" in tui.screen(), 30):
            return f"no approval screen: {tui.screen()[-200:]}"
        tui.keys("y")
        if not await _appears(workspace / "started.txt", 30):
            return "the approved command never started"
        tui.keys("Escape")
        await asyncio.sleep(6)
        screen = tui.screen()
    finally:
        tui.kill()
    if (workspace / "late.txt").exists() and "interrupted" in screen.lower():
        return "the screen says Interrupted while the command ran on to its end"
    return None


async def no_p_where_no_rule(lab: Lab, server: ServerProcess) -> str | None:
    """The approval screen for a write into .git/hooks (no rule can allow it) offers no `p`."""
    workspace = lab.workspace("no-p")
    env = {"CAIRN_SERVER_URL": server.url, "CAIRN_TOKEN": server.token("no-p")}
    from cairn_fakes.script import Script

    lab.fake.set_script(
        Script.from_dict(
            {
                "turns": [
                    {
                        "tool_calls": [
                            call("write", path=".git/hooks/pre-push", content="#!/bin/sh\n")
                        ]
                    },
                    {"text": "Done."},
                ]
            }
        )
    )
    tui = await asyncio.to_thread(_tui, lab, workspace, env, None)
    try:
        tui.keys("plant it", "Enter")
        if not await asyncio.to_thread(wait_for, lambda: "Allow once" in tui.screen(), 30):
            return f"no approval screen: {tui.screen()[-200:]}"
        screen = tui.screen()
        tui.keys("p")
        await asyncio.sleep(1)
        tui.keys("n", "Enter")
        await asyncio.sleep(1)
    finally:
        tui.kill()
    settings_file = lab.home / ".config" / "cairn" / "settings.toml"
    if settings_file.exists() and ".git" in settings_file.read_text():
        return "pressing p saved a rule for .git/hooks"
    return "the screen offers p (Allow always)" if "Allow always" in screen else None


MULTI_CLIENT: list[tuple[str, Attack]] = [
    ("one tool request, one executor (two clones, a TUI idle)", one_executor),
    ("kill -9 of the server mid-command: honest record", server_killed_mid_command),
    ("kill -9 of the client mid-command: honest record", client_killed_mid_command),
    ("Esc during an approved command is honest", esc_during_command),
    ("no `p` where no rule can allow (.git/hooks write)", no_p_where_no_rule),
]


def multi_client_run(lab: Lab) -> list[Outcome]:
    if shutil.which("tmux") is None:
        picked = _picked(MULTI_CLIENT, lab.quick)
        return [Outcome("multi-client", n, "tmux is not installed") for n, _ in picked]
    server = lab.start_server(f"sqlite+aiosqlite:///{lab.root / 'multi.db'}")
    return _run_table("multi-client", MULTI_CLIENT, lab, server)


def families() -> list[Family]:
    def names(
        category: str, table: list[tuple[str, Attack]]
    ) -> Callable[[], list[tuple[str, str]]]:
        return lambda: [(category, name) for name, _ in table]

    storage_names = [("client data files are private", private_files), *STORAGE_PG]
    return [
        Family("storage", ("storage",), names("storage", storage_names), storage_run, quick=True),
        Family(
            "multi-client",
            ("multi-client",),
            names("multi-client", MULTI_CLIENT),
            multi_client_run,
            quick=True,
        ),
        Family(
            "protocol",
            ("protocol",),
            names("protocol", PROTOCOL),
            lambda lab: _run_table("protocol", PROTOCOL, lab, _protocol_server(lab)),
            quick=True,
            prepare=make_expiring_token,
        ),
    ]
