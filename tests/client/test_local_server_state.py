"""What the local server's state file records and how a broken one is read: unit tests of
`local_server` (the processes themselves are tested in tests/e2e/test_local_server.py)."""

from __future__ import annotations

from pathlib import Path

from cairn_client.local_server import STATE_FILE, read_state, settings_digest, status_lines


def test_the_settings_digest_names_server_settings_and_hides_their_values() -> None:
    environ = {
        "CAIRN_MODEL": "openai/gpt-5.4-mini",
        "OPENAI_API_KEY": "sk-secret-value",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "CAIRN_SERVER_URL": "http://example.com",  # the client's own: no reason to restart
        "CAIRN_TOKEN": "cairn_token",
        "CAIRN_DATA_DIR": "/tmp/data",
        "CAIRN_TEST_TIMEOUT_SCALE": "3",
        "HOME": "/root",
    }
    digest = settings_digest(environ)
    assert sorted(digest) == ["ANTHROPIC_BASE_URL", "CAIRN_MODEL", "OPENAI_API_KEY"]
    assert "sk-secret-value" not in str(digest)
    changed = settings_digest({**environ, "CAIRN_MODEL": "anthropic/claude-sonnet-4-6"})
    assert [name for name in digest if digest[name] != changed[name]] == ["CAIRN_MODEL"]


def test_a_missing_or_broken_state_file_means_no_server(tmp_path: Path) -> None:
    assert read_state(tmp_path) is None
    (tmp_path / STATE_FILE).write_text('{"pid": 1')
    assert read_state(tmp_path) is None
    (tmp_path / STATE_FILE).write_text('{"pid": 1, "port": 2}')  # fields missing
    assert read_state(tmp_path) is None
    assert status_lines(tmp_path) == ["local server: not running", f"data dir:     {tmp_path}"]
