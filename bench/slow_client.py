"""What a websocket client that never reads costs a real `cairn-server`: its resident memory.

Owns the measurement: a server process on a fresh SQLite file, one client that floods pings
with large nonces and never reads a pong, the server's RSS sampled before, at its peak and
after the client is closed (4413) or disconnects.

    uv run python bench/slow_client.py                  # default backlog limit (16 MiB)
    uv run python bench/slow_client.py --backlog-mb 1 --pings 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cairn_protocol import PROTOCOL_VERSION, Hello, Ping, WorkspaceIdentity
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TOKEN = "cairn_bench_slow_client_token"
NONCE_BYTES = 30 * 1024  # hex: 60 KiB per pong


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def start_server(folder: Path, backlog_mb: int) -> tuple[subprocess.Popen[bytes], int]:
    env = {
        **os.environ,
        "CAIRN_DATABASE_URL": f"sqlite+aiosqlite:///{folder / 'cairn.db'}",
        "CAIRN_BOOTSTRAP_TOKEN": TOKEN,
        "CAIRN_WS_BACKLOG_MB": str(backlog_mb),
    }
    command = [sys.executable, "-m", "cairn_server", "serve", "--port", "0", "--announce"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE)
    assert process.stdout is not None
    port = int(json.loads(process.stdout.readline())["port"])
    return process, port


async def stalled_client(port: int) -> ClientConnection:
    """A client whose socket takes little and whose library stops reading at once."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    client = await connect(
        f"ws://127.0.0.1:{port}/v1/ws", sock=sock, compression=None, max_queue=1, max_size=None
    )
    hello = Hello(
        protocol_version=PROTOCOL_VERSION,
        token=TOKEN,
        workspace=WorkspaceIdentity(root_commit="f" * 40, display_name="bench", path="/bench"),
        tools=[],
    )
    await client.send(hello.model_dump_json())
    await client.recv()  # the welcome; nothing is read after it
    return client


class PeakRss:
    """The highest RSS of a process, sampled every few milliseconds on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mib(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mib(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak


async def measure(port: int, pid: int, pings: int) -> None:
    before = rss_mib(pid)
    client = await stalled_client(port)
    sampler = PeakRss(pid)

    sent_count = [0]

    async def flood() -> None:
        for _ in range(pings):
            await client.send(Ping(nonce=os.urandom(NONCE_BYTES).hex()).model_dump_json())
            sent_count[0] += 1

    flooding = asyncio.create_task(flood())
    last_progress, last_count = time.monotonic(), 0
    while not flooding.done() and time.monotonic() - last_progress < 3:
        await asyncio.sleep(0.05)
        if sent_count[0] != last_count:
            last_progress, last_count = time.monotonic(), sent_count[0]
    flooding.cancel()
    peak = sampler.stop()
    while_connected = rss_mib(pid)
    code: int | None = None
    try:  # drain: what the sockets held, then the close
        while True:
            await asyncio.wait_for(client.recv(), 30)
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
    except TimeoutError:
        await client.close()
    await asyncio.sleep(2)
    after = rss_mib(pid)
    pongs = sent_count[0] * NONCE_BYTES * 2 / 2**20
    print(f"pings sent before the server stopped reading: {sent_count[0]} ({pongs:.0f} MiB)")
    print(f"server RSS before the client:       {before:7.1f} MiB")
    print(f"server RSS peak while it flooded:   {peak:7.1f} MiB")
    print(f"server RSS with it still connected: {while_connected:7.1f} MiB")
    print(f"server RSS after it was gone:       {after:7.1f} MiB")
    print(f"close code the client saw: {code}")
    print(
        f"pings_sent={sent_count[0]} rss_before_mib={before:.1f} rss_peak_mib={peak:.1f} "
        f"rss_connected_mib={while_connected:.1f} rss_after_mib={after:.1f} "
        f"peak_growth_mib={peak - before:.1f} close_code={code}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backlog-mb", type=int, default=16)
    parser.add_argument("--pings", type=int, default=3000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process, port = start_server(Path(folder), args.backlog_mb)
        try:
            asyncio.run(measure(port, process.pid, args.pings))
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
