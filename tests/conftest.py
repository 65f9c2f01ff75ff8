"""Fixtures shared by every test folder (the fake model server), and the test kinds.

Every test is marked `unit`, `integration` or `e2e` (see support.kinds): `uv run pytest -m
unit` runs the fast ones. Helpers live in tests/support (importable as `support.*`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from cairn_client.local_server import STATE_FILE, stop_local_server, stop_local_servers_under
from cairn_fakes.runner import FakeModelServer
from support.cli import TEST_IDLE_EXIT_S
from support.kinds import KINDS, kind_of


def pytest_configure(config: pytest.Config) -> None:
    for kind, meaning in KINDS.items():
        config.addinivalue_line("markers", f"{kind}: {meaning}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(kind_of(item))


@pytest.fixture(autouse=True)
def client_data_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Client state (the call log, the embedded server's files) in a folder of the test's
    own unless a test sets CAIRN_DATA_DIR itself, never in the user's data dir."""
    monkeypatch.setenv("CAIRN_DATA_DIR", str(tmp_path_factory.mktemp("cairn-data")))
    monkeypatch.setenv("CAIRN_IDLE_EXIT_S", TEST_IDLE_EXIT_S)


@pytest.fixture(scope="session", autouse=True)
def no_local_server_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The background local servers the tests' `cairn` started are stopped at the end."""
    yield
    stop_local_servers_under(tmp_path_factory.getbasetemp())


@pytest.fixture(autouse=True)
def local_servers_stopped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A local server a test's `cairn` left up is stopped after it (its data dir is conftest's
    or one directly in the test's folder), so idle servers never pile up in a long run."""
    yield
    base = tmp_path_factory.getbasetemp()
    for state_file in [*base.glob(f"*/{STATE_FILE}"), *base.glob(f"*/*/{STATE_FILE}")]:
        stop_local_server(state_file.parent)


@pytest.fixture(scope="session")
def shared_fake_model() -> Iterator[FakeModelServer]:
    """One fake model server per test process: stopping one takes a fifth of a second."""
    with FakeModelServer() as fake:
        yield fake


@pytest.fixture
def fake_model(shared_fake_model: FakeModelServer) -> FakeModelServer:
    """The fake OpenAI + Anthropic server with an empty script, no recorded requests and
    empty caches (the process's shared one, reset); tests call set_script."""
    shared_fake_model.reset()
    return shared_fake_model


@pytest.fixture
def wide_umask() -> Iterator[None]:
    """umask 022, the common default under which new files are readable by everyone, so a
    test of file modes shows what Cairn asks for rather than what this machine allows."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)
