"""The real `cairn -p` falling behind: frozen mid-answer, it is closed by its server (4413),
then reconnects with resume_after and still prints the whole answer, once."""

from __future__ import annotations

import os
import random
import signal
import string
import time
from pathlib import Path

from cairn_fakes.runner import FakeModelServer
from support.cli import start_cairn
from support.servers import model_env, script
from support.waiting import wait_until


def test_a_frozen_client_is_closed_then_catches_up_by_resuming(
    repo: Path, tmp_path: Path, fake_model: FakeModelServer
) -> None:
    # 16 MB streamed in 64 KB pieces while the client is frozen; random, so the websocket's
    # compression cannot make the frames small enough for the sockets' buffers to hold.
    rng = random.Random(12)
    answer = "".join(rng.choices(string.ascii_letters + string.digits, k=16_000_000))
    fake_model.set_script(script({"text": answer, "chunk_size": 65536, "delay_s": 1.0}))
    env = {**model_env(fake_model), "CAIRN_WS_BACKLOG_MB": "1"}
    process = start_cairn(repo, tmp_path / "data", "-p", "say it all", env=env)
    try:
        wait_until(lambda: bool(fake_model.requests), 60, "the model was never asked")
        os.kill(process.pid, signal.SIGSTOP)  # frozen, as a stuck terminal or a laptop lid
        wait_until(lambda: bool(fake_model.answer_times), 60, "the answer was never sent")
        time.sleep(2.0)  # the server finishes the run meanwhile
        os.kill(process.pid, signal.SIGCONT)
        out, err = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "cairn: the server closed the connection (too slow: more than 1 MiB" in err
    assert out == answer + "\n"
