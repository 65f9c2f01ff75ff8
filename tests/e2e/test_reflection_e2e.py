"""The real `cairn` command and reflection: `cairn -c -p /reflect`, then the reflection's edit
in `cairn memory history` under the author "reflection", reverted with `cairn memory revert`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cairn_fakes.runner import FakeModelServer
from support.cli import cairn
from support.servers import call, model_env, script

FACT = "- Dana: tabs, never spaces"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def test_reflect_edits_memory_visibly_and_revertibly(
    repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    # No idle reflection: only the ones asked for.
    env = {**model_env(fake_model), "CAIRN_REFLECTION_IDLE_S": "0"}
    fake_model.set_script(
        script(
            {"text": "Noted: tabs."},
            {"text": "One fact.", "tool_calls": [call("memory_insert", label="human", text=FACT)]},
            {"text": "Noted: Fridays."},
            {"tool_calls": [{"name": "memory_insert", "raw_arguments": '{"label": "hu'}]},
        )
    )
    said = cairn(repo, data_dir, "-p", "I'm Dana. I always want tabs, never spaces.", env=env)
    assert said.returncode == 0, said.stderr

    reflected = cairn(repo, data_dir, "-c", "-p", "/reflect", env=env)
    assert reflected.returncode == 0, reflected.stderr
    line = reflected.stdout.splitlines()[0]
    assert line.startswith("Reflection (openai/gpt-4o-mini): 1 memory edit (human v2); in ")
    assert "$" in line
    # The reflection model read the conversation, with the memory edit tools only.
    asked = fake_model.requests[-1].body
    assert "I always want tabs" in str(asked["messages"])
    assert {tool["function"]["name"] for tool in asked["tools"]} == {
        "memory_insert",
        "memory_replace",
        "memory_rethink",
    }

    history = cairn(repo, data_dir, "memory", "history", "human", env={**env, "COLUMNS": "250"})
    assert history.returncode == 0, history.stderr
    newest = next(row for row in history.stdout.splitlines() if row.strip().startswith("v2"))
    assert "reflection via memory_insert (conversation cnv_" in newest
    shown = cairn(repo, data_dir, "memory", "show", "human", env=env)
    assert FACT in shown.stdout

    reverted = cairn(repo, data_dir, "memory", "revert", "human", "1", env=env)
    assert reverted.returncode == 0, reverted.stderr
    assert FACT not in cairn(repo, data_dir, "memory", "show", "human", env=env).stdout

    # Nothing new since: no model call, nothing changed.
    before = len(fake_model.requests)
    again = cairn(repo, data_dir, "-c", "-p", "/reflect", env=env)
    assert again.returncode == 0, again.stderr
    assert "0 memory edits; nothing new to reflect on" in again.stdout
    assert len(fake_model.requests) == before

    # A malformed answer: exit 1, one line saying so, nothing changed.
    told = cairn(repo, data_dir, "-c", "-p", "Also: deploys go out on Fridays.", env=env)
    assert told.returncode == 0, told.stderr
    broken = cairn(repo, data_dir, "-c", "-p", "/reflect", env=env)
    assert broken.returncode == 1
    assert "failed: the reflection model's answer was malformed" in broken.stdout
    assert "nothing was changed" in broken.stdout
    assert FACT not in cairn(repo, data_dir, "memory", "show", "human", env=env).stdout
