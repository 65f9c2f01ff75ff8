"""What `cairn` reads once at start, for tests that build its parts themselves.

The settings from the test's environment (conftest gives each test its own CAIRN_DATA_DIR),
and the call log, sandbox, policy and shell launches a launch builds from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cairn_client.call_log import CallLog
from cairn_client.config import ClientSettings
from cairn_client.policy.policy import Policy
from cairn_client.policy.settings import PolicySettings
from cairn_client.policy.types import ApproveMode, Mode
from cairn_client.tools.registry import ShellPlacement
from cairn_client.tools.sandbox import Launch, Sandbox, SandboxSettings, unsandboxed_launch


def client_settings() -> ClientSettings:
    """The settings `cairn` would start with here and now."""
    return ClientSettings.from_env()


def environment() -> dict[str, str]:
    """The environment snapshot `cairn` would take at start here and now: what git, the
    shell and the embedded server start from."""
    return client_settings().process_env


def call_log(workspace_root: Path) -> CallLog:
    """The call log `cairn` keeps for `workspace_root`, in the test's data folder."""
    return CallLog.in_data_dir(client_settings().data_dir, workspace_root)


def detected_sandbox(
    settings: SandboxSettings | None = None, hidden: Sequence[Path] = ()
) -> Sandbox:
    """The sandbox that starts here, with commands starting from the settings' environment."""
    return Sandbox.detect(settings, hidden, environ=environment())


def policy_for(
    settings: PolicySettings, approve_override: ApproveMode | Mode | None = None
) -> Policy:
    """A policy over `settings` with the sandbox detected for them, as a launch builds it."""
    return Policy(settings, approve_override, sandbox=detected_sandbox(settings.sandbox))


def outside_sandbox() -> ShellPlacement:
    """Shell commands run on the machine itself, without secret-looking variables."""
    return ShellPlacement(Sandbox(None, environ=environment()))


def unsandboxed(command: str) -> Launch:
    """`command` run by /bin/sh on the machine itself, from the settings' environment."""
    return unsandboxed_launch(command, environment())
