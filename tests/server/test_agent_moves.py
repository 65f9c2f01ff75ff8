"""A codebase's key changes at its first commit: the agent under the key it had moves to the new
one, once, on SQLite and PostgreSQL, and the old key stays an alias of it."""

from __future__ import annotations

import asyncio

from cairn_protocol import WorkspaceIdentity
from cairn_server.storage.store import Store

ROOT = "c" * 40
PATH = "/home/dev/fresh"


def commitless(path: str = PATH, origin: str | None = None) -> WorkspaceIdentity:
    return WorkspaceIdentity(root_commit=None, origin=origin, display_name="fresh", path=path)


def committed(moved_from: list[str], root: str = ROOT, path: str = PATH) -> WorkspaceIdentity:
    return WorkspaceIdentity(
        root_commit=root, origin=None, display_name="fresh", path=path, moved_from=moved_from
    )


async def test_the_agent_moves_once_and_its_old_key_still_finds_it(store: Store) -> None:
    user = await store.ensure_user("dev")
    before = await store.get_or_create_agent(user.id, commitless())
    conversation = await store.create_conversation(before.id)

    moved = await store.get_or_create_agent(user.id, committed([f"path:{PATH}"]))
    old_client = await store.get_or_create_agent(user.id, commitless())

    assert moved.id == old_client.id == before.id
    assert moved.codebase_key == f"git:{ROOT}"
    assert (await store.latest_conversation(moved.id)) == conversation
    assert [a.id for a in await store.list_agents(user.id)] == [before.id]


async def test_concurrent_first_opens_after_the_commit_move_it_once(store: Store) -> None:
    user = await store.ensure_user("dev")
    before = await store.get_or_create_agent(user.id, commitless())
    agents = await asyncio.gather(
        *(store.get_or_create_agent(user.id, committed([f"path:{PATH}"])) for _ in range(8))
    )
    assert {a.id for a in agents} == {before.id}
    assert len(await store.list_agents(user.id)) == 1


async def test_nothing_moves_onto_a_key_that_has_an_agent_or_from_a_root_commit(
    store: Store,
) -> None:
    user = await store.ensure_user("dev")
    waiting = await store.get_or_create_agent(user.id, commitless())
    other_history = await store.get_or_create_agent(user.id, committed([], root="d" * 40))
    taken = await store.get_or_create_agent(user.id, committed([]))

    again = await store.get_or_create_agent(user.id, committed([f"path:{PATH}"]))
    stolen = await store.get_or_create_agent(user.id, committed([f"git:{'d' * 40}"], root="e" * 40))

    assert again.id == taken.id
    assert stolen.id not in (other_history.id, waiting.id)
    assert (await store.get_or_create_agent(user.id, commitless())).id == waiting.id


async def test_another_users_agent_never_moves(store: Store) -> None:
    dev, other = await store.ensure_user("dev"), await store.ensure_user("other")
    theirs = await store.get_or_create_agent(other.id, commitless())
    mine = await store.get_or_create_agent(dev.id, committed([f"path:{PATH}"]))
    assert mine.id != theirs.id
    assert (await store.get_or_create_agent(other.id, commitless())).id == theirs.id
