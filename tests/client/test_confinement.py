"""Confinement: every path resolved on disk must stay inside the workspace and be a regular
file or folder; each refusal tells the model what was wrong and what to do instead."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest
from cairn_client.tools.base import ToolOutcome
from cairn_client.tools.paths import PathOutsideWorkspace, SpecialFile, resolve_in_workspace
from cairn_client.tools.registry import execute_call, prepare_call
from cairn_protocol import ToolRequest
from support.settings import outside_sandbox

_calls = 0


async def run(root: Path, tool: str, **arguments: Any) -> ToolOutcome:
    global _calls
    _calls += 1
    request = ToolRequest(run_id="r", call_id=f"c-{_calls}", tool=tool, arguments=arguments)
    return await execute_call(root, prepare_call(root, request), placement=outside_sandbox())


def test_containment_is_by_components_not_string_prefix(repo: Path) -> None:
    sibling = repo.parent / (repo.name + "-other")
    sibling.mkdir()
    (sibling / "x.txt").write_text("no\n")
    with pytest.raises(PathOutsideWorkspace):
        resolve_in_workspace(repo, str(sibling / "x.txt"))
    with pytest.raises(PathOutsideWorkspace):
        resolve_in_workspace(repo, f"../{repo.name}-other/x.txt")


@pytest.mark.parametrize(
    "path", ["..", "../..", "src/../../x", "/", "/etc/passwd", "~/.ssh/id_rsa"]
)
def test_escapes_are_refused_with_advice(repo: Path, path: str) -> None:
    with pytest.raises(PathOutsideWorkspace) as refused:
        resolve_in_workspace(repo, path)
    assert "relative to the workspace root" in str(refused.value)


def test_symlinks_are_followed_before_the_check(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("outside\n")
    (repo / "up").symlink_to("..")
    (repo / "abs").symlink_to(outside)
    (repo / "chain").symlink_to("abs")
    (repo / "inner").symlink_to("src")
    for path in ("up/outside/data.txt", "abs/data.txt", "chain/data.txt", "abs"):
        with pytest.raises(PathOutsideWorkspace) as refused:
            resolve_in_workspace(repo, path)
        assert "through a symlink" in str(refused.value)
    assert resolve_in_workspace(repo, "inner/app.py").name == "app.py"  # inside is fine


def test_a_link_to_a_device_is_refused(repo: Path) -> None:
    (repo / "null").symlink_to("/dev/null")
    with pytest.raises(PathOutsideWorkspace):
        resolve_in_workspace(repo, "null")


async def test_fifos_and_sockets_are_refused_by_every_tool(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.mkfifo(repo / "pipe")
    monkeypatch.chdir(repo)  # a relative bind keeps the socket path under the length limit
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("sock")
        with pytest.raises(SpecialFile, match="a socket"):
            resolve_in_workspace(repo, "sock")
    with pytest.raises(SpecialFile, match="FIFO"):
        resolve_in_workspace(repo, "pipe")
    for tool, arguments in [
        ("read", {"path": "pipe"}),
        ("grep", {"pattern": "x", "path": "pipe"}),
        ("edit", {"path": "pipe", "old_string": "a", "new_string": "b"}),
        ("write", {"path": "pipe", "content": "x"}),
    ]:
        outcome = await asyncio_timeout(run(repo, tool, **arguments))
        assert outcome.status == "error", tool
        assert "not a regular file" in (outcome.reason or ""), (tool, outcome.reason)


async def test_a_whole_tree_grep_and_glob_skip_a_fifo_without_hanging(repo: Path) -> None:
    os.mkfifo(repo / "pipe")
    grep = await asyncio_timeout(run(repo, "grep", pattern="TODO"))
    assert grep.status == "ok" and "src/util.py" in grep.content
    glob = await asyncio_timeout(run(repo, "glob", pattern="*"))
    assert glob.status == "ok"


async def test_absolute_and_dotted_paths_inside_are_shown_relative(repo: Path) -> None:
    real = Path(await asyncio.to_thread(os.path.realpath, repo))
    outcome = await run(repo, "read", path=str(real / "src" / "../README.md"))
    assert outcome.status == "ok" and "# Demo" in outcome.content
    request = ToolRequest(
        run_id="r", call_id="abs", tool="read", arguments={"path": str(real / "README.md")}
    )
    assert prepare_call(repo, request).preview.title == "Read README.md"


async def asyncio_timeout(work: Any) -> ToolOutcome:
    result: ToolOutcome = await asyncio.wait_for(work, timeout=20)
    return result
