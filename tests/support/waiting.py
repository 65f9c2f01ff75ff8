"""Waiting in tests: one deadline rule, stretched on slow machines by an environment variable.

`CAIRN_TEST_TIMEOUT_SCALE` (default 1) multiplies every deadline here: set it to 3 on a
loaded machine rather than editing timeouts. Prefer waiting on an event where there is one.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.pilot import Pilot

SCALE = float(os.environ.get("CAIRN_TEST_TIMEOUT_SCALE", "1"))
NOT_IN_TIME = "condition not met in time"


def scaled(seconds: float) -> float:
    """A timeout, stretched by CAIRN_TEST_TIMEOUT_SCALE."""
    return seconds * SCALE


class Deadline:
    """A point `seconds` (scaled) from now."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + scaled(seconds)

    def passed(self) -> bool:
        return time.monotonic() > self.at


async def until(
    pilot: Pilot[Any] | None,
    condition: Callable[[], bool],
    timeout: float = 20,
    message: str = NOT_IN_TIME,
) -> None:
    """Poll `condition` on the event loop (letting a Pilot app process its messages) until
    it holds; AssertionError(message) at the deadline."""
    deadline = Deadline(timeout)
    while not condition():
        if deadline.passed():
            raise AssertionError(message)
        await (pilot.pause(0.02) if pilot is not None else asyncio.sleep(0.02))


def wait_until(
    condition: Callable[[], bool], timeout: float = 20, message: str = NOT_IN_TIME
) -> None:
    """`until` for code outside an event loop: blocks this thread while polling."""
    deadline = Deadline(timeout)
    while not condition():
        if deadline.passed():
            raise AssertionError(message)
        time.sleep(0.02)
