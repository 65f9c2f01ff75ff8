"""The client's data folder and what cairn keeps there (local token, call log with tool output,
the embedded server's database and log) are readable by their owner only, also when an older
cairn left them readable by everyone."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cairn_client.call_log import CALL_LOG_FILE
from cairn_client.config import ClientSettings
from cairn_client.launch import prepare_launch
from cairn_client.local_server import LOCK_FILE, STATE_FILE, stop_local_server
from cairn_protocol import ToolResult

KEPT = ["local-token", CALL_LOG_FILE, "server.log", "cairn.db", "cairn.db-wal", "cairn.db-shm"]
KEPT += [STATE_FILE, LOCK_FILE]  # the background local server's port, token, pid; its lock


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("wide_umask")
async def test_a_new_data_folder_and_its_files_are_private(repo: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    local = ClientSettings(server_url=None, token=None, data_dir=data)
    launch = prepare_launch(repo, settings=local)
    try:
        await launch.endpoint.resolve()  # the server has made and opened its database
        launch.call_log.start("call_1")
        launch.call_log.finish(ToolResult(call_id="call_1", status="ok", content="secret output"))
        assert mode(data) == 0o700
        assert {name: mode(data / name) for name in KEPT} == dict.fromkeys(KEPT, 0o600)
    finally:
        await launch.shutdown()
        stop_local_server(data)


@pytest.mark.usefixtures("wide_umask")
def test_files_an_older_cairn_left_readable_are_tightened_at_start(
    repo: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    for name in KEPT:
        (data / name).touch(mode=0o644)
    # Nothing is started:
    remote = ClientSettings(server_url="http://127.0.0.1:9", token="cairn_token", data_dir=data)
    prepare_launch(repo, settings=remote)
    assert mode(data) == 0o700
    assert {name: mode(data / name) for name in KEPT} == dict.fromkeys(KEPT, 0o600)
