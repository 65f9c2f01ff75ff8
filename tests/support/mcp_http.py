"""The test MCP server (support/mcp_server.py) over streamable HTTP on loopback, for the tests
of an agent's MCP servers that the Cairn server calls.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.waiting import wait_until

MCP_SERVER = Path(__file__).with_name("mcp_server.py")


@contextmanager
def http_mcp_server() -> Iterator[str]:
    """The server running on a free port until the block ends; its endpoint URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, str(MCP_SERVER), "--http-port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        with socket.socket() as attempt:
            return attempt.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(listening, timeout=60)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.kill()
        process.wait()
