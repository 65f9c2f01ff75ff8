"""The real `cairn` in a repository with no commit, then after its first commit: the same agent
and conversation go on (issue 14: the identity moves, nothing is orphaned)."""

from __future__ import annotations

from pathlib import Path

from cairn_fakes.runner import FakeModelServer
from support.cli import cairn
from support.repos import run_git
from support.servers import TEST_TOKEN, cairn_server, script, sqlite_url


def test_the_conversation_goes_on_after_the_first_commit(
    tmp_path: Path, fake_model: FakeModelServer
) -> None:
    repo = tmp_path / "fresh"
    repo.mkdir()
    run_git(repo, "init", "-q", "-b", "main")
    (repo / "plan.md").write_text("# plan\n")
    data_dir = tmp_path / "data"
    fake_model.set_script(script({"text": "Noted: parser first."}, {"text": "Parser first."}))
    with cairn_server(sqlite_url(tmp_path), fake_model) as server:
        env = {"CAIRN_SERVER_URL": server.url, "CAIRN_TOKEN": TEST_TOKEN}
        first = cairn(repo, data_dir, "-p", "remember: parser first", env=env)
        assert first.returncode == 0, first.stderr
        run_git(repo, "add", "-A")
        run_git(repo, "commit", "-q", "-m", "first")

        again = cairn(repo, data_dir, "-c", "-p", "what comes first?", env=env)

    assert again.returncode == 0, again.stderr
    sent = [m["content"] for m in fake_model.requests[-1].body["messages"] if m["role"] == "user"]
    assert sent[-2:] == ["remember: parser first", "what comes first?"]
