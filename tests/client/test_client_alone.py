"""The client installed without the server: the real `cairn` says so in one line, no traceback.

The server package is made unimportable in the child process the way an absent package is:
`sys.modules["cairn_server"] = None` in a sitecustomize, so `import cairn_server` fails and
`importlib.util.find_spec("cairn_server")` finds nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.cli import cairn
from support.repos import make_repo

SERVER_MISSING = "needs the cairn-server package, which is not installed here"


@pytest.fixture
def without_server(tmp_path: Path) -> dict[str, str]:
    """Environment for a child `cairn` that cannot import cairn_server."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text('import sys\nsys.modules["cairn_server"] = None\n')
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize(
    "args",
    [("-p", "hello"), ("memory", "list"), ("server", "--help"), ("demo",)],
    ids=["headless", "memory", "server", "demo"],
)
def test_a_client_without_the_server_says_so_in_one_line(
    tmp_path: Path, without_server: dict[str, str], args: tuple[str, ...]
) -> None:
    repo = make_repo(tmp_path / "repo", {"README.md": "# alone\n"})
    done = cairn(repo, tmp_path / "data", *args, env=without_server)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("cairn: ") and done.stderr.count("\n") == 1, done.stderr
    assert SERVER_MISSING in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
