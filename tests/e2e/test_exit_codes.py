"""The exit codes of the real `cairn` command, the same in every subcommand (README, Exit codes):
0 done, 1 the agent did not finish, 2 usage or configuration, 3 the model or authentication."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cairn_client.errors import ExitCode
from cairn_client.local_server import stop_local_server
from cairn_fakes.runner import FakeModelServer
from cairn_server.api.background import BackgroundServer
from support.cli import cairn
from support.servers import TEST_TOKEN, cairn_server, model_env, script, sqlite_url

UNREACHABLE = {"CAIRN_SERVER_URL": "http://127.0.0.1:9", "CAIRN_TOKEN": TEST_TOKEN}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def server(tmp_path: Path, fake_model: FakeModelServer) -> Iterator[BackgroundServer]:
    """A Cairn server on the fake model, without retries: a model failure is final at once."""
    with cairn_server(sqlite_url(tmp_path), fake_model, env={"CAIRN_MODEL_RETRIES": "0"}) as up:
        yield up


def remote(server: BackgroundServer, token: str = TEST_TOKEN) -> dict[str, str]:
    return {"CAIRN_SERVER_URL": server.url, "CAIRN_TOKEN": token}


def test_a_key_the_provider_refuses_is_3(
    repo: Path, data_dir: Path, fake_model: FakeModelServer, server: BackgroundServer
) -> None:
    fake_model.set_script(script({"error": {"status": 401, "message": "Incorrect API key"}}))
    done = cairn(repo, data_dir, "-p", "hi", env=remote(server))
    assert done.returncode == ExitCode.MODEL, done.stderr
    assert "Model error" in done.stderr and "Incorrect API key" in done.stderr


def test_a_model_that_keeps_failing_is_3(
    repo: Path, data_dir: Path, fake_model: FakeModelServer, server: BackgroundServer
) -> None:
    fake_model.set_script(script({"error": {"status": 500, "message": "the GPU caught fire"}}))
    done = cairn(repo, data_dir, "-p", "hi", env=remote(server))
    assert done.returncode == ExitCode.MODEL, done.stderr
    assert "Model error" in done.stderr


def test_a_refused_cairn_token_is_3_in_every_command(
    repo: Path, data_dir: Path, server: BackgroundServer
) -> None:
    wrong = remote(server, token="cairn_not_the_token")
    for args in (["-p", "hi"], ["runs", "list"]):  # the websocket, then REST
        done = cairn(repo, data_dir, *args, env=wrong)
        assert done.returncode == ExitCode.MODEL, (args, done.stderr)
        said = done.stderr.strip().splitlines()
        assert all(line.startswith("cairn: ") for line in said), (args, done.stderr)
        assert "token" in said[-1], (args, done.stderr)


def test_an_unknown_model_is_2_before_anything_runs(
    tmp_path: Path, repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    env = {"CAIRN_MODEL": "nosuch/model"}
    with cairn_server(sqlite_url(tmp_path), fake_model, env=env) as unknown:
        done = cairn(repo, data_dir, "-p", "hi", env=remote(unknown))
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "Unknown model 'nosuch/model'" in done.stderr
    assert fake_model.requests == []


def test_a_server_that_cannot_be_reached_is_2_in_every_command(repo: Path, data_dir: Path) -> None:
    for args in (["-p", "hi"], ["memory", "list"]):  # the websocket, then REST
        done = cairn(repo, data_dir, *args, env=UNREACHABLE)
        assert done.returncode == ExitCode.USAGE, (args, done.stderr)
        said = done.stderr.strip().splitlines()  # startup notes (no sandbox here), then it
        assert all(line.startswith("cairn: ") for line in said), (args, done.stderr)
        assert "cannot reach" in said[-1] and "http://127.0.0.1:9" in said[-1], done.stderr


def test_usage_errors_are_2(repo: Path, data_dir: Path) -> None:
    for args in (
        ["--no-such-flag"],
        ["ticket"],
    ):
        done = cairn(repo, data_dir, *args, env=UNREACHABLE)
        assert done.returncode == ExitCode.USAGE, (args, done.stderr)


def test_an_unknown_id_is_2_and_a_conversation_of_nobody_is_2(
    repo: Path, data_dir: Path, server: BackgroundServer
) -> None:
    done = cairn(repo, data_dir, "runs", "show", "run_nosuch", env=remote(server))
    assert done.returncode == ExitCode.USAGE, done.stderr
    resumed = cairn(repo, data_dir, "-p", "hi", "--resume", "cnv_nosuch", env=remote(server))
    assert resumed.returncode == ExitCode.USAGE, resumed.stderr


def test_a_model_the_provider_does_not_have_is_3_in_one_line_however_it_is_named(
    repo: Path, data_dir: Path, fake_model: FakeModelServer
) -> None:
    """CAIRN_MODEL, --model and `/model NAME`: refused before any model request, as the
    first request's 404 would have ended it (README, Exit codes)."""
    env = model_env(fake_model)
    missing = {**env, "CAIRN_MODEL": "openai/gpt-nonexistent"}
    for args, variables in (
        (["-p", "hi"], missing),  # the server's default (the local server this cairn starts)
        (["--model", "openai/gpt-nonexistent", "-p", "hi"], env),
        (["-p", "/model openai/gpt-nonexistent"], env),
    ):
        done = cairn(repo, data_dir, *args, env=variables)
        assert done.returncode == ExitCode.MODEL, (args, done.stderr)
        [line] = [said for said in done.stderr.splitlines() if "gpt-nonexistent" in said]
        assert line.startswith(f"cairn: OpenAI at {fake_model.openai_base_url} has no model")
        assert "it lists openai/gpt-4o" in line, (args, line)
        stop_local_server(data_dir)  # the next one starts with its own settings
    assert fake_model.requests == []
