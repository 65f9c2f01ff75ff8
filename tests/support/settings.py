"""What `cairn` reads once at start, for tests that build its parts themselves.

The settings from the test's environment (conftest gives each test its own CAIRN_DATA_DIR)
and the call log a launch keeps there.
"""

from __future__ import annotations

from pathlib import Path

from cairn_client.call_log import CallLog
from cairn_client.config import ClientSettings


def client_settings() -> ClientSettings:
    """The settings `cairn` would start with here and now."""
    return ClientSettings.from_env()


def call_log(workspace_root: Path) -> CallLog:
    """The call log `cairn` keeps for `workspace_root`, in the test's data folder."""
    return CallLog.in_data_dir(client_settings().data_dir, workspace_root)
