"""A repository's first commit changes its identity; its agent (memory, conversations) moves
with it. Real git repositories in tmp_path, the real server and REST client."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cairn_client.api import CairnApi
from cairn_client.workspace import Workspace, detect_workspace, with_earlier_keys
from cairn_protocol.rest import AgentPublic
from support.repos import GIT_ENV, run_git
from support.servers import TEST_TOKEN, Served
from support.settings import environment


@pytest.fixture
async def api(served: Served) -> AsyncIterator[CairnApi]:
    async with CairnApi(served.url, TEST_TOKEN) as client:
        yield client


def new_repo(folder: Path, origin: str | None = None) -> Path:
    """A repository with no commit yet (and one file to commit)."""
    folder.mkdir(parents=True)
    run_git(folder, "init", "-q", "-b", "main")
    if origin is not None:
        run_git(folder, "remote", "add", "origin", origin)
    (folder / "notes.md").write_text(f"# {folder.name}\n")
    return folder


def project_from_2020(folder: Path) -> Path:
    """A repository whose history began long before this test."""
    new_repo(folder)
    run_git(folder, "add", "-A")
    old_commit = {**os.environ, **GIT_ENV, "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z"}
    subprocess.run(["git", "commit", "-qm", "2020"], cwd=folder, env=old_commit, check=True)
    return folder


def commit(folder: Path) -> None:
    run_git(folder, "add", "-A")
    run_git(folder, "commit", "-q", "-m", "first")


def opened(folder: Path, data_dir: Path) -> Workspace:
    """The workspace as `cairn` opens it there (the data folder keeps its earlier keys)."""
    env = environment()
    return with_earlier_keys(detect_workspace(folder, environ=env), data_dir, environ=env)


async def agent_in(api: CairnApi, folder: Path, data_dir: Path) -> AgentPublic:
    return await api.ensure_agent(opened(folder, data_dir).identity)


async def test_the_first_commit_keeps_the_agent_and_its_memory(
    api: CairnApi, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    repo = new_repo(tmp_path / "fresh")
    before = await agent_in(api, repo, data)
    await api.create_block(before.id, "plan", value="ship the parser first")
    commit(repo)

    after = await agent_in(api, repo, data)

    assert after.id == before.id
    assert (await api.get_block(after.id, "plan")).value == "ship the parser first"
    assert opened(repo, data).identity.key == after.codebase_key
    assert after.codebase_key.startswith("git:")


async def test_a_clone_elsewhere_finds_the_moved_agent_and_an_old_client_too(
    api: CairnApi, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    repo = new_repo(tmp_path / "moves")
    provisional = opened(repo, data).identity  # what a cairn still open since then sends
    before = await api.ensure_agent(provisional)
    commit(repo)
    await agent_in(api, repo, data)
    clone = tmp_path / "elsewhere" / "copy"
    run_git(tmp_path, "clone", "-q", str(repo), str(clone))

    in_clone = await agent_in(api, clone, tmp_path / "other-data")
    still_open = await api.ensure_agent(provisional)

    assert in_clone.id == still_open.id == before.id
    assert len([a for a in await api.list_agents() if a.id == before.id]) == 1


async def test_two_new_repositories_stay_two_agents_after_their_commits(
    api: CairnApi, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    one, two = new_repo(tmp_path / "one"), new_repo(tmp_path / "two")
    first = [await agent_in(api, one, data), await agent_in(api, two, data)]
    commit(one)
    commit(two)
    then = [await agent_in(api, one, data), await agent_in(api, two, data)]
    assert [a.id for a in then] == [a.id for a in first]
    assert then[0].id != then[1].id


async def test_a_repository_cloned_into_a_reused_folder_does_not_take_its_agent(
    api: CairnApi, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    older = project_from_2020(tmp_path / "older-project")
    folder = new_repo(tmp_path / "reused")
    abandoned = await agent_in(api, folder, data)
    shutil.rmtree(folder)
    run_git(tmp_path, "clone", "-q", str(older), str(folder))

    unrelated = await agent_in(api, folder, data)

    assert unrelated.id != abandoned.id
    assert (await agent_in(api, folder, data)).id == unrelated.id


async def test_a_checkout_of_a_remote_without_commits_moves_to_the_first_commit_anywhere(
    api: CairnApi, tmp_path: Path
) -> None:
    """The origin names the commitless checkout; the first commit, pushed and cloned, is
    opened elsewhere first: that clone finds the agent by the origin it shares."""
    remote = tmp_path / "remote.git"
    run_git(tmp_path, "init", "-q", "--bare", str(remote))
    repo = new_repo(tmp_path / "origin-first", origin=str(remote))
    before = await agent_in(api, repo, tmp_path / "data")
    commit(repo)
    run_git(repo, "push", "-q", "origin", "main")
    clone = tmp_path / "clone"
    run_git(tmp_path, "clone", "-q", str(remote), str(clone))

    assert (await agent_in(api, clone, tmp_path / "clone-data")).id == before.id
    assert (await agent_in(api, repo, tmp_path / "data")).id == before.id


async def test_two_clients_opening_after_the_first_commit_at_once_share_the_agent(
    api: CairnApi, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    repo = new_repo(tmp_path / "race")
    before = await agent_in(api, repo, data)
    commit(repo)
    identity = opened(repo, data).identity

    agents = await asyncio.gather(*(api.ensure_agent(identity) for _ in range(6)))

    assert {a.id for a in agents} == {before.id}
