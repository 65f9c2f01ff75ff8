"""The client's settings: every variable read once at start, with today's names and defaults,
and a bad value is one line and exit code 2 before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from cairn_client.cli import app
from cairn_client.config import ClientSettings, ClientSettingsError
from typer.testing import CliRunner


def test_names_and_defaults() -> None:
    settings = ClientSettings.from_env(
        {
            "CAIRN_SERVER_URL": "https://cairn.example.com",
            "CAIRN_TOKEN": "cairn_t",
            "CAIRN_DATA_DIR": "/tmp/cairn-data",
            "CAIRN_DATABASE_URL": "sqlite+aiosqlite:///x.db",
            "EDITOR": "nano",
            "GITHUB_TOKEN": " ghp_x ",
            "CAIRN_GITHUB_API_URL": "http://127.0.0.1:9",
            "LINEAR_API_KEY": "lin_api_x",
            "CAIRN_LINEAR_API_URL": "http://127.0.0.1:8",
        }
    )
    assert (settings.server_url, settings.token) == ("https://cairn.example.com", "cairn_t")
    assert settings.data_dir == Path("/tmp/cairn-data")
    assert settings.database_url == "sqlite+aiosqlite:///x.db"
    assert settings.editor == "nano"
    assert settings.tickets.github_token == "ghp_x"
    assert settings.tickets.github_api_url == "http://127.0.0.1:9"
    assert settings.tickets.linear_api_key == "lin_api_x"
    assert settings.tickets.linear_api_url == "http://127.0.0.1:8"
    assert settings.process_env["EDITOR"] == "nano"  # what child processes start from


def test_empty_values_are_unset() -> None:
    settings = ClientSettings.from_env(
        {"CAIRN_SERVER_URL": "", "CAIRN_TOKEN": "", "CAIRN_DATA_DIR": "", "VISUAL": ""}
    )
    assert (settings.server_url, settings.token) == (None, None)
    assert settings.data_dir.name == "cairn"  # the platform's data folder
    assert settings.editor == "vi"
    assert ClientSettings.from_env({"VISUAL": "code -w", "EDITOR": "nano"}).editor == "code -w"


@pytest.mark.parametrize("url", ["ftp://cairn.example.com", "http://", "two words"])
def test_a_bad_server_url_is_one_line(url: str) -> None:
    with pytest.raises(ClientSettingsError) as raised:
        ClientSettings.from_env({"CAIRN_SERVER_URL": url})
    assert str(raised.value).startswith(f"CAIRN_SERVER_URL={url!r}: ")
    assert "\n" not in str(raised.value)


def test_the_cli_refuses_a_bad_setting_at_start(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["-p", "hello"],
        env={"CAIRN_SERVER_URL": "ftp://cairn.example.com", "CAIRN_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2
    assert result.stderr == (
        "cairn: CAIRN_SERVER_URL='ftp://cairn.example.com': "
        "use an http://, https://, ws:// or wss:// address\n"
    )
    assert list(tmp_path.iterdir()) == []  # nothing was started or written
