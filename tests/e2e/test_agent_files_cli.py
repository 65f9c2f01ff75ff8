"""The real `cairn agent import` and `cairn agent export` against a server: a public Letta
file imports with its table, a second import is refused unless --replace, bad files end with
one line and exit 2, and an export imports back with the same memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cairn_fakes.runner import FakeModelServer
from support.cli import cairn
from support.repos import make_repo
from support.servers import TEST_TOKEN, cairn_server, sqlite_url

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "agentfiles"


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


async def test_import_and_export_through_the_cairn_command(
    tmp_path: Path, repo: Path, fake_model: FakeModelServer
) -> None:
    source = SHARED / "memgpt_agent.af"
    if not source.exists():
        pytest.skip(f"{source} is not on this machine")
    data_dir = tmp_path / "data"
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        env = {"CAIRN_SERVER_URL": server.url, "CAIRN_TOKEN": TEST_TOKEN}

        imported = cairn(repo, data_dir, "agent", "import", str(source), env=env)
        assert imported.returncode == 0, imported.stderr
        assert "converted" in imported.stdout and "left out" in imported.stdout
        assert "imported as agt_" in imported.stdout

        again = cairn(repo, data_dir, "agent", "import", str(source), env=env)
        assert again.returncode == 1
        assert "--replace" in one_line(again.stderr)

        not_json = tmp_path / "broken.af"
        not_json.write_text("{agents: nope")
        huge = tmp_path / "huge.af"
        with huge.open("wb") as handle:
            handle.truncate(50 * 2**20)
        for bad, words in [(not_json, "not JSON"), (huge, "50.0 MiB")]:
            refused = cairn(repo, data_dir, "agent", "import", str(bad), "--replace", env=env)
            assert refused.returncode == 2, refused.stderr
            assert words in one_line(refused.stderr)

        exported = cairn(repo, data_dir, "agent", "export", env=env)
        assert exported.returncode == 0, exported.stderr
        written = repo / "repo.af"
        document = json.loads(written.read_text())
        letta = json.loads(json.loads(source.read_text()))
        labels = {b["label"]: b["value"] for b in document["blocks"]}
        for block in letta["blocks"]:
            assert labels[block["label"]] == block["value"]
        assert labels["instructions"] == letta["agents"][0]["system"].strip("\n")
        assert document["agents"][0]["llm_config"]["handle"] == "openai/gpt-4o-mini"

        kept = cairn(repo, data_dir, "agent", "export", env=env)
        assert kept.returncode == 2 and "--force" in one_line(kept.stderr)
        to_stdout = cairn(repo, data_dir, "agent", "export", "-", env=env)
        assert json.loads(to_stdout.stdout)["blocks"] == document["blocks"]

        back = cairn(repo, data_dir, "agent", "import", str(written), "--replace", env=env)
        assert back.returncode == 0, back.stderr
        assert "set aside" in back.stdout

        other = make_repo(tmp_path / "other", {"README.md": "# other\n"})
        there = ("agent", "import", str(written), "--codebase", str(other), "--json")
        moved = cairn(repo, data_dir, *there, env=env)
        assert moved.returncode == 0, moved.stderr
        assert json.loads(moved.stdout)["agent"]["display_name"] == "other"
        listed = cairn(other, data_dir, "memory", "list", env=env)
        assert "instructions" in listed.stdout and "read-only" in listed.stdout
