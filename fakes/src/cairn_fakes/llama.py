"""A real OpenAI-compatible server for the opt-in tests and the benchmark: llama.cpp's
`llama-server` with a GGUF model, or any server already running at a URL.

Owns reading CAIRN_REAL_MODEL (a URL, or a .gguf file served by the CAIRN_LLAMA_SERVER
binary) and starting, waiting for and stopping that binary on a free loopback port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REAL_MODEL_ENV = "CAIRN_REAL_MODEL"
LLAMA_SERVER_ENV = "CAIRN_LLAMA_SERVER"
READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class RealModel:
    """Where the real model is: a running server's URL, or a GGUF file and the binary."""

    url: str | None = None
    gguf: Path | None = None
    binary: Path | None = None


def real_model_from(env: Mapping[str, str] | None = None) -> RealModel | None:
    """CAIRN_REAL_MODEL as a URL or a GGUF path (with CAIRN_LLAMA_SERVER); None when unset.
    ValueError when set but unusable, saying why."""
    source = os.environ if env is None else env
    value = source.get(REAL_MODEL_ENV, "").strip()
    if not value:
        return None
    if value.startswith(("http://", "https://")):
        return RealModel(url=value.rstrip("/"))
    gguf = Path(value)
    binary = Path(source.get(LLAMA_SERVER_ENV, "").strip() or "llama-server")
    if not gguf.is_file():
        raise ValueError(f"{REAL_MODEL_ENV}={value}: no such GGUF file (or give a URL)")
    if not binary.is_file():
        raise ValueError(f"{LLAMA_SERVER_ENV}={binary}: no llama-server binary there")
    return RealModel(gguf=gguf, binary=binary)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def llama_server(model: RealModel, context: int = 8192, log: Path | None = None) -> Iterator[str]:
    """The OpenAI base URL (…/v1) of the real model: the given URL, or `llama-server
    --jinja -c context` started on a free loopback port, stopped afterwards."""
    if model.url is not None:
        yield model.url if model.url.endswith("/v1") else f"{model.url}/v1"
        return
    assert model.gguf is not None and model.binary is not None
    port = free_port()
    command = [str(model.binary), "-m", str(model.gguf), "--jinja", "-c", str(context)]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    output = log.open("ab") if log is not None else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log is not None and not isinstance(output, int):
            output.close()


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    """Until GET /health answers 200 (the model is loaded); RuntimeError if it exits."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama-server exited with {process.returncode} while loading")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"llama-server at {url} was not ready in {READY_TIMEOUT_S:.0f} s")
