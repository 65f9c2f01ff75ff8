"""Storage: migrations, tokens, agent identity, the event log, runs, tool calls and messages.

Every test that takes `store` or `database` runs on SQLite and on PostgreSQL (see conftest).
"""

from __future__ import annotations

import asyncio
import hashlib
import stat
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cairn_protocol import (
    AssistantDelta,
    AssistantMessage,
    HistoryToolCall,
    RunFinished,
    RunStarted,
    ToolRequest,
    Usage,
    WorkspaceIdentity,
)
from cairn_server.config import ServerSettings
from cairn_server.domain import ModelMessage, ToolCall
from cairn_server.storage.db import (
    Database,
    alembic_config,
    default_database_url,
    head_revision,
    include_in_schema_compare,
    is_search_index,
    open_database,
)
from cairn_server.storage.models import ApiToken, Conversation
from cairn_server.storage.repository import NotFoundError
from cairn_server.storage.store import (
    RunInProgressError,
    Store,
    TokenRefused,
)
from sqlalchemy import Connection, inspect, text
from sqlmodel import SQLModel, select

ROOT_COMMIT = "a" * 40


def workspace(
    root_commit: str | None = ROOT_COMMIT, path: str = "/home/dev/cairn", name: str = "cairn"
) -> WorkspaceIdentity:
    return WorkspaceIdentity(
        root_commit=root_commit, origin="github.com/acme/cairn", display_name=name, path=path
    )


def is_aware(value: datetime | None) -> bool:
    return value is not None and value.utcoffset() is not None


async def new_conversation(store: Store, user: str = "dev") -> Conversation:
    owner = await store.ensure_user(user)
    agent = await store.get_or_create_agent(owner.id, workspace())
    return await store.create_conversation(agent.id, "first")


# --------------------------------------------------------------------------- database and schema


async def test_migrated_schema_matches_the_models(database: Database) -> None:
    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "include_object": include_in_schema_compare},
        )
        return list(compare_metadata(context, SQLModel.metadata))

    async with database.engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_downgrade_to_base_and_upgrade_again(database: Database, database_url: str) -> None:
    def run(connection: Connection, action: str) -> list[str]:
        config = alembic_config(database_url)
        config.attributes["connection"] = connection
        getattr(command, action)(config, "head" if action == "upgrade" else "base")
        names = inspect(connection).get_table_names()
        return sorted(name for name in names if not is_search_index(name, "table"))

    async with database.engine.begin() as connection:
        assert await connection.run_sync(run, "downgrade") == ["alembic_version"]
    async with database.engine.begin() as connection:
        tables = await connection.run_sync(run, "upgrade")
    assert set(tables) == set(SQLModel.metadata.tables) | {"alembic_version"}


async def test_a_conversation_has_one_running_run_whichever_process_starts_it(
    store: Store,
) -> None:
    conversation = await new_conversation(store)
    other = await new_conversation(store, "someone")
    first = await store.create_run(conversation.id, "m")
    await store.create_run(other.id, "m")  # another conversation's run is no obstacle
    with pytest.raises(RunInProgressError, match="already going"):
        await store.create_run(conversation.id, "m")  # e.g. through another replica
    await store.finish_run(first.id, "end_turn")
    await store.create_run(conversation.id, "m")
    assert len(await store.running_runs(conversation.id)) == 1


async def test_the_migration_ends_all_but_the_newest_running_run_of_a_conversation(
    database: Database, database_url: str
) -> None:
    def migrate(connection: Connection, revision: str) -> None:
        config = alembic_config(database_url)
        config.attributes["connection"] = connection
        if revision == "head":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)

    async with database.engine.begin() as connection:
        await connection.run_sync(migrate, "0012")
    store = Store(database)
    conversation = await new_conversation(store)
    runs = [f"run_{n}" for n in range(3)]
    async with database.engine.begin() as connection:  # as 0012 left them: no index yet
        for number, run_id in enumerate(runs):
            values = {
                "id": run_id,
                "conversation": conversation.id,
                "at": datetime(2026, 12, 1 + number),
            }
            await connection.execute(
                text(
                    "INSERT INTO runs (id, conversation_id, status, model, steps, input_tokens,"
                    " cached_input_tokens, output_tokens, cost_usd, created_at) VALUES (:id,"
                    " :conversation, 'running', 'm', 0, 0, 0, 0, 0, :at)"
                ),
                values,
            )
    async with database.engine.begin() as connection:
        await connection.run_sync(migrate, "head")
    assert [run.id for run in await store.running_runs(conversation.id)] == [runs[-1]]
    ended = await store.get_run(runs[0])
    assert ended is not None and ended.stop_reason == "server_restart"


def test_alembic_commands_work_without_a_running_server(tmp_path: Path) -> None:
    """The path a developer takes to write the next migration: upgrade, then `alembic check`."""
    config = alembic_config(f"sqlite:///{tmp_path / 'cli.db'}")
    command.upgrade(config, "head")
    command.check(config)  # raises if the models have changes no migration covers


async def test_data_survives_reopening_the_database(database_url: str) -> None:
    db = await open_database(database_url)
    conversation = await new_conversation(Store(db))
    await Store(db).add_message(conversation.id, None, ModelMessage(role="user", content="hi"))
    await db.close()

    reopened = await open_database(database_url)  # migrating an up-to-date schema is a no-op
    try:
        messages = await Store(reopened).list_messages(conversation.id)
        assert [m.content for m in messages] == ["hi"]
    finally:
        await reopened.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_runs_in_wal_mode_with_foreign_keys(database: Database) -> None:
    async with database.engine.connect() as connection:
        assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        busy_timeout_ms = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
        assert isinstance(busy_timeout_ms, int) and busy_timeout_ms >= 1000


async def test_timestamps_read_back_as_utc(store: Store) -> None:
    conversation = await new_conversation(store)
    loaded = await store.get_conversation(conversation.id)
    assert loaded is not None and is_aware(loaded.created_at)
    assert abs((loaded.created_at - conversation.created_at).total_seconds()) < 1
    run = await store.create_run(conversation.id, "gpt-test")
    finished = await store.finish_run(run.id, "end_turn")  # read back through RETURNING
    assert is_aware(finished.finished_at) and is_aware(finished.created_at)
    await store.add_message(conversation.id, run.id, ModelMessage(role="user", content="hi"))
    assert all(is_aware(m.created_at) for m in await store.list_messages(conversation.id))


def test_default_url_is_a_sqlite_file_in_the_user_data_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CAIRN_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    url = default_database_url()
    assert url == f"sqlite+aiosqlite:///{tmp_path / 'cairn' / 'cairn.db'}"
    assert (tmp_path / "cairn").is_dir()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("wide_umask")
async def test_the_sqlite_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    fresh = tmp_path / "new-folder" / "cairn.db"
    database = await open_database(f"sqlite:///{fresh}")
    try:
        await Store(database).ensure_user("dev")  # writes: the WAL and its index exist now
        files = [fresh, fresh.with_name("cairn.db-wal"), fresh.with_name("cairn.db-shm")]
        assert [mode(f) for f in files] == [0o600] * 3
        assert mode(fresh.parent) == 0o700
    finally:
        await database.close()

    # Files an older Cairn left readable by everyone are tightened when the server starts.
    old = tmp_path / "old.db"
    for name in ("old.db", "old.db-wal", "old.db-shm"):
        (tmp_path / name).touch(mode=0o644)
    database = await open_database(f"sqlite:///{old}")
    try:
        assert [mode(tmp_path / n) for n in ("old.db", "old.db-wal", "old.db-shm")] == [0o600] * 3
    finally:
        await database.close()


@pytest.mark.usefixtures("wide_umask")
def test_the_default_data_folder_is_private(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CAIRN_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    default_database_url()
    assert mode(tmp_path / "cairn") == 0o700
    (tmp_path / "cairn").chmod(0o755)
    default_database_url()
    assert mode(tmp_path / "cairn") == 0o700


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("postgresql://u:p@db:5432/cairn", "postgresql+asyncpg://u:p@db:5432/cairn"),
        ("postgres://u@db/cairn", "postgresql+asyncpg://u@db/cairn"),
        ("postgresql+asyncpg://u@db/cairn", "postgresql+asyncpg://u@db/cairn"),
        ("sqlite:////srv/cairn.db", "sqlite+aiosqlite:////srv/cairn.db"),
    ],
)
def test_configured_url_gets_an_async_driver(
    monkeypatch: pytest.MonkeyPatch, configured: str, expected: str
) -> None:
    monkeypatch.setenv("CAIRN_DATABASE_URL", configured)
    assert default_database_url(ServerSettings.from_env().database_url) == expected


# --------------------------------------------------------------------------- users and tokens


async def test_token_finds_its_user_and_only_its_hash_is_stored(
    store: Store, database: Database
) -> None:
    plaintext = await store.create_token("ada", label="laptop")
    assert plaintext.startswith("cairn_") and len(plaintext) > 40

    user = await store.authenticate(plaintext)
    assert user.name == "ada"
    for wrong in (plaintext + "x", ""):
        with pytest.raises(TokenRefused, match="invalid or missing token"):
            await store.authenticate(wrong)

    async with database.session() as session:
        (token,) = (await session.exec(select(ApiToken))).all()
    assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert plaintext not in token.model_dump_json()
    assert token.last_used_at is not None


async def test_add_token_is_idempotent_and_owned_by_one_user(store: Store) -> None:
    await store.add_token("local", "bootstrap-secret", label="embedded")
    await store.add_token("local", "bootstrap-secret", label="embedded")
    user = await store.authenticate("bootstrap-secret")
    assert user.name == "local"
    with pytest.raises(ValueError, match="another user"):
        await store.add_token("mallory", "bootstrap-secret")
    assert (await store.ensure_user("local")).id == user.id


# --------------------------------------------------------------------------- agent identity


async def test_same_codebase_means_same_agent(store: Store) -> None:
    user = await store.ensure_user("dev")
    first = await store.get_or_create_agent(user.id, workspace())
    again = await store.get_or_create_agent(user.id, workspace())
    other_clone = await store.get_or_create_agent(
        user.id, workspace(path="/tmp/elsewhere/cairn-copy", name="cairn-copy")
    )
    assert first.id == again.id == other_clone.id
    assert first.codebase_key == f"git:{ROOT_COMMIT}"


async def test_different_root_commit_or_user_means_different_agent(store: Store) -> None:
    dev = await store.ensure_user("dev")
    other = await store.ensure_user("other")
    base = await store.get_or_create_agent(dev.id, workspace())
    fork = await store.get_or_create_agent(dev.id, workspace(root_commit="b" * 40))
    theirs = await store.get_or_create_agent(other.id, workspace())
    assert len({base.id, fork.id, theirs.id}) == 3
    assert [a.id for a in await store.list_agents(dev.id)] == [base.id, fork.id]


async def test_concurrent_first_connections_create_one_agent(store: Store) -> None:
    user = await store.ensure_user("dev")
    agents = await asyncio.gather(
        *(store.get_or_create_agent(user.id, workspace()) for _ in range(10))
    )
    assert len({agent.id for agent in agents}) == 1
    assert len(await store.list_agents(user.id)) == 1


async def test_many_codebases_connecting_at_once_all_succeed(store: Store) -> None:
    """Concurrent read-then-write transactions must queue for the lock, not fail with it."""
    user = await store.ensure_user("dev")
    agents = await asyncio.gather(
        *(store.get_or_create_agent(user.id, workspace(root_commit=f"{i:040x}")) for i in range(30))
    )
    assert len({agent.id for agent in agents}) == 30


async def test_agent_model_override(store: Store) -> None:
    user = await store.ensure_user("dev")
    agent = await store.get_or_create_agent(user.id, workspace())
    assert (await store.set_agent_model(agent.id, "gpt-test")).model == "gpt-test"
    fetched = await store.get_agent(agent.id)
    assert fetched is not None and fetched.model == "gpt-test"
    assert (await store.set_agent_model(agent.id, None)).model is None
    with pytest.raises(NotFoundError):
        await store.set_agent_model("agt_missing", "x")


# --------------------------------------------------------------------------- messages


async def test_messages_round_trip_in_order_with_tool_calls(store: Store) -> None:
    conversation = await new_conversation(store)
    run = await store.create_run(conversation.id, "gpt-test")
    sent = [
        ModelMessage(role="user", content="fix the typo"),
        ModelMessage(
            role="assistant",
            content="Looking.",
            tool_calls=(
                ToolCall(id="tc_1", name="read", arguments='{"path": "README.md"}'),
                ToolCall(id="tc_2", name="grep", arguments='{"pattern": "teh"}'),
            ),
        ),
        ModelMessage(role="tool", content="no such file", tool_call_id="tc_1", is_error=True),
        ModelMessage(role="tool", content="README.md:3: teh", tool_call_id="tc_2"),
    ]
    for message in sent:
        await store.add_message(conversation.id, run.id, message)

    stored = await store.list_messages(conversation.id)
    assert [store.to_model_message(m) for m in stored] == sent
    assert all(m.run_id == run.id for m in stored)
    with pytest.raises(NotFoundError):
        await store.add_message("cnv_missing", None, sent[0])


async def test_latest_conversation_is_the_most_recently_updated(store: Store) -> None:
    older = await new_conversation(store)
    newer = await store.create_conversation(older.agent_id, "second")
    assert (await store.latest_conversation(older.agent_id)) == newer

    await store.add_message(older.id, None, ModelMessage(role="user", content="back to this"))
    latest = await store.latest_conversation(older.agent_id)
    assert latest is not None and latest.id == older.id
    assert [c.id for c in await store.list_conversations(older.agent_id)] == [older.id, newer.id]


# --------------------------------------------------------------------------- events


async def test_events_get_consecutive_seqs_and_replay_in_order(store: Store) -> None:
    conversation = await new_conversation(store)
    assert await store.last_seq(conversation.id) == 0
    started = await store.append_event(
        conversation.id, RunStarted(run_id="run_1", user_text="hello")
    )
    said = await store.append_event(
        conversation.id,
        AssistantMessage(
            run_id="run_1",
            text="Reading.",
            tool_calls=[HistoryToolCall(call_id="c1", tool="read", arguments={"path": "a"})],
        ),
    )
    finished = await store.append_event(
        conversation.id,
        RunFinished(run_id="run_1", stop_reason="end_turn", usage=Usage(output_tokens=3)),
    )
    assert (started.seq, said.seq, finished.seq) == (1, 2, 3)
    assert await store.last_seq(conversation.id) == 3
    assert await store.events_after(conversation.id, 1) == [said, finished]
    assert await store.events_after(conversation.id, 0) == [started, said, finished]
    assert await store.events_after(conversation.id, 3) == []


async def test_concurrent_appends_get_distinct_consecutive_seqs(store: Store) -> None:
    conversation = await new_conversation(store)
    events = await asyncio.gather(
        *(
            store.append_event(
                conversation.id,
                ToolRequest(run_id="r", call_id=f"c{i}", tool="read", arguments={"i": i}),
            )
            for i in range(50)
        )
    )
    assert sorted(event.seq for event in events) == list(range(1, 51))
    replayed = await store.events_after(conversation.id, 0)
    assert [event.seq for event in replayed] == list(range(1, 51))
    assert sorted(replayed, key=lambda e: e.seq) == sorted(events, key=lambda e: e.seq)


async def test_transient_events_and_unknown_conversations_are_refused(store: Store) -> None:
    conversation = await new_conversation(store)
    with pytest.raises(ValueError, match="transient"):
        await store.append_event(conversation.id, AssistantDelta(run_id="r", text="t"))
    with pytest.raises(NotFoundError):
        await store.append_event("cnv_missing", RunStarted(run_id="r", user_text="x"))
    assert await store.last_seq(conversation.id) == 0


# --------------------------------------------------------------------------- runs and tool calls


async def test_run_usage_accumulates_and_finishing_is_idempotent(store: Store) -> None:
    conversation = await new_conversation(store)
    run = await store.create_run(conversation.id, "gpt-test")
    await store.record_step(
        run.id, Usage(input_tokens=100, cached_input_tokens=40, output_tokens=7, cost_usd=0.25)
    )
    run = await store.record_step(run.id, Usage(input_tokens=50, output_tokens=3, cost_usd=0.5))
    assert (run.steps, run.input_tokens, run.cached_input_tokens, run.output_tokens) == (
        2,
        150,
        40,
        10,
    )
    assert run.cost_usd == pytest.approx(0.75)
    assert [r.id for r in await store.running_runs(conversation.id)] == [run.id]

    finished = await store.finish_run(run.id, "end_turn", detail="done")
    again = await store.finish_run(run.id, "cancelled")
    assert finished.status == again.status == "finished"
    assert again.stop_reason == "end_turn" and again.finished_at == finished.finished_at
    assert await store.running_runs() == []
    with pytest.raises(ValueError, match="stop reason"):
        await store.finish_run(run.id, "exploded")


async def test_only_a_pending_tool_call_is_settled(store: Store) -> None:
    conversation = await new_conversation(store)
    run = await store.create_run(conversation.id, "gpt-test")
    call = await store.create_tool_call(conversation.id, run.id, "tc_1", "edit", {"path": "a.py"})
    assert [c.id for c in await store.pending_tool_calls(conversation.id)] == [call.id]

    settled = await store.settle_tool_call(call.id, "ok", "edited a.py", None)
    assert settled is not None and settled.status == "ok" and settled.settled_at is not None
    assert await store.settle_tool_call(call.id, "denied", "", "too late") is None
    assert await store.settle_tool_call("call_unknown", "ok", "", None) is None

    kept = await store.get_tool_call(call.id)
    assert kept is not None
    assert (kept.status, kept.content, kept.reason) == ("ok", "edited a.py", None)
    assert kept.arguments == {"path": "a.py"}
    assert await store.pending_tool_calls(conversation.id) == []


async def test_racing_results_for_one_call_settle_it_once(store: Store) -> None:
    conversation = await new_conversation(store)
    run = await store.create_run(conversation.id, "gpt-test")
    call = await store.create_tool_call(conversation.id, run.id, "tc_1", "shell", {"cmd": "ls"})
    outcomes = await asyncio.gather(
        *(store.settle_tool_call(call.id, "ok", f"result {i}", None) for i in range(5))
    )
    assert sum(outcome is not None for outcome in outcomes) == 1


async def test_server_restart_interrupts_running_runs_and_leaves_their_calls_unknown(
    store: Store,
) -> None:
    conversation = await new_conversation(store)
    done = await store.create_run(conversation.id, "gpt-test")
    await store.finish_run(done.id, "end_turn")
    running = await store.create_run(conversation.id, "gpt-test")
    answered = await store.create_tool_call(conversation.id, running.id, "tc_1", "read", {})
    await store.settle_tool_call(answered.id, "ok", "contents", None)
    waiting = await store.create_tool_call(conversation.id, running.id, "tc_2", "edit", {})

    restarted = "the client did not report whether it ran (the server restarted)"
    interrupted = await store.interrupt_running_runs(restarted)

    assert [run.id for run in interrupted] == [running.id]
    assert interrupted[0].stop_reason == "server_restart"
    assert await store.running_runs() == []
    unknown = await store.get_tool_call(waiting.id)
    assert unknown is not None
    assert (unknown.status, unknown.reason) == ("unknown", restarted)
    assert [c.id for c in await store.unknown_tool_calls(conversation.id, 10)] == [waiting.id]
    # A late answer settles it once; a pending-only settle does not touch it.
    assert await store.settle_tool_call(waiting.id, "ok", "late", None) is None
    settled = await store.settle_tool_call(waiting.id, "ok", "late", None, was="unknown")
    assert settled is not None and settled.status == "ok"
    assert await store.settle_tool_call(waiting.id, "ok", "again", None, was="unknown") is None
    untouched = await store.get_tool_call(answered.id)
    assert untouched is not None and untouched.status == "ok"
    finished_before = await store.get_run(done.id)
    assert finished_before is not None and finished_before.stop_reason == "end_turn"
    assert await store.interrupt_running_runs(restarted) == []


async def test_tool_call_must_belong_to_its_runs_conversation(store: Store) -> None:
    conversation = await new_conversation(store)
    other = await store.create_conversation(conversation.agent_id)
    run = await store.create_run(conversation.id, "gpt-test")
    with pytest.raises(ValueError, match="not in conversation"):
        await store.create_tool_call(other.id, run.id, "tc", "read", {})
    with pytest.raises(NotFoundError):
        await store.create_run("cnv_missing", "gpt-test")


def test_the_head_read_from_the_scripts_is_alembics() -> None:
    """A database at this revision opens without loading Alembic: it must be Alembic's head."""
    from alembic.script import ScriptDirectory

    config = alembic_config("sqlite://")
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()
