"""Server settings from the environment: defaults, parsing, and clear errors."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import pytest
from cairn_server.config import FetchAllowance, ServerSettings, SettingsError


def test_budget_and_limit_settings_are_read_from_the_environment() -> None:
    settings = ServerSettings.from_env(
        {
            "CAIRN_CONTEXT_BUDGET": "32000",
            "CAIRN_COMPACTION_THRESHOLD": "0.7",
            "CAIRN_SUMMARY_MODEL": "openai/gpt-5.4-nano",
            "CAIRN_RUN_COST_LIMIT_USD": "0.5",
            "CAIRN_REPEAT_LIMIT": "4",
        },
        database_url="sqlite+aiosqlite:///x.db",
    )
    assert (settings.context_budget, settings.compaction_threshold) == (32_000, 0.7)
    assert settings.model.summary_model == "openai/gpt-5.4-nano"
    assert (settings.run_cost_limit_usd, settings.repeat_limit) == (0.5, 4)
    assert settings.run_token_limit == 2_000_000  # the default


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CAIRN_CONTEXT_BUDGET", "lots", "is not an integer from 2000 up"),
        ("CAIRN_CONTEXT_BUDGET", "500", "out of range"),
        ("CAIRN_COMPACTION_THRESHOLD", "1.5", "from 0.1 to 1.0"),
        ("CAIRN_STEP_LIMIT", "0", "out of range"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"{name}='{value}'.*{message}"):
        ServerSettings.from_env({name: value}, database_url="sqlite+aiosqlite:///x.db")


def test_fetch_settings_read_their_allowances_and_limits() -> None:
    settings = ServerSettings.from_env(
        {
            "CAIRN_FETCH_ALLOW": "10.0.0.0/8, 127.0.0.1:8080 [::1]:9000 Intranet.Example:8443",
            "CAIRN_FETCH_MAX_BYTES": "100000",
            "CAIRN_FETCH_CACHE_TTL_S": "0",
        },
        database_url="sqlite+aiosqlite:///x.db",
    )
    fetch = settings.fetch
    assert fetch.allow == (
        FetchAllowance(network=ipaddress.ip_network("10.0.0.0/8")),
        FetchAllowance(network=ipaddress.ip_network("127.0.0.1/32"), port=8080),
        FetchAllowance(network=ipaddress.ip_network("::1/128"), port=9000),
        FetchAllowance(host="intranet.example", port=8443),
    )
    assert (fetch.max_bytes, fetch.cache_ttl_s, fetch.allow_private) == (100_000, 0.0, False)
    assert (fetch.timeout_s, fetch.max_redirects) == (20.0, 5)  # the defaults


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CAIRN_FETCH_ALLOW", "10.0.0.0/8,bad_host!", "'bad_host!' is not an address, network"),
        ("CAIRN_FETCH_ALLOW", "127.0.0.1:http", r"has no valid port \(1 to 65535\)"),
        ("CAIRN_FETCH_ALLOW_PRIVATE", "maybe", "boolean"),
        ("CAIRN_FETCH_MAX_REDIRECTS", "50", "expected an integer from 0 to 20"),
        ("CAIRN_FETCH_TIMEOUT_S", "0", "expected a number from 1.0 up"),
    ],
)
def test_a_bad_fetch_setting_names_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"{name}='{value}'.*{message}"):
        ServerSettings.from_env({name: value}, database_url="sqlite+aiosqlite:///x.db")


def cairn_server(*arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the `cairn-server` command with these variables added to the environment."""
    return subprocess.run(
        [sys.executable, "-m", "cairn_server.cli", *arguments],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_server_command_refuses_a_bad_setting_in_one_line() -> None:
    done = cairn_server("migrate", CAIRN_COMPACTION_THRESHOLD="2")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cairn-server: CAIRN_COMPACTION_THRESHOLD='2' is out of range: "
        "expected a number from 0.1 to 1.0"
    ]


def test_a_bad_model_setting_stops_the_server_at_start_in_one_line() -> None:
    """Not a `no_model` at the first run: `serve` refuses to start."""
    done = cairn_server("serve", "--port", "0", CAIRN_MODEL_RETRIES="abc")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cairn-server: CAIRN_MODEL_RETRIES='abc' is not an integer from 0 up"
    ]
