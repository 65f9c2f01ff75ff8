"""The record of tool calls this machine executed, so a replayed request never runs twice.

Owns a small SQLite file in the client data folder, keyed by workspace, bounded in size.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from cairn_protocol import ToolResult

from cairn_client.private_files import private_file

log = logging.getLogger(__name__)

CALL_LOG_FILE = "call-log.sqlite3"
KEEP_PER_WORKSPACE = 500
INTERRUPTED = (
    "an earlier cairn process started this call and stopped before it finished, so it may "
    "or may not have taken effect; check the workspace before trying again"
)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    workspace TEXT NOT NULL,
    call_id TEXT NOT NULL,
    started_at REAL NOT NULL,
    result TEXT,
    PRIMARY KEY (workspace, call_id)
)
"""


class CallLog:
    """Executed call_ids and their results for one workspace, shared by every cairn process.

    `start` is written before a call runs and `finish` after, so a successor of a killed
    process knows a call may have run even when its result was never recorded.
    """

    def __init__(self, path: Path, workspace_root: Path, keep: int = KEEP_PER_WORKSPACE) -> None:
        self.path = path
        self.workspace = hashlib.sha256(str(workspace_root).encode()).hexdigest()[:32]
        self.keep = keep
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # calls are logged from worker threads
        self._unpruned = 0

    @classmethod
    def in_data_dir(cls, data_dir: Path, workspace_root: Path) -> CallLog:
        return cls(data_dir / CALL_LOG_FILE, workspace_root)

    def recorded(self, call_id: str) -> ToolResult | None:
        """The result of a call that was executed here (an error result if it was cut off)."""
        row = self._row(call_id)
        if row is None:
            return None
        if row[0] is None:
            return ToolResult(call_id=call_id, status="error", reason=INTERRUPTED)
        return ToolResult.model_validate_json(row[0])

    def completed(self, call_id: str) -> ToolResult | None:
        """The result of a call that ran here to its end (None if it was cut off, or is still
        running in another cairn process)."""
        row = self._row(call_id)
        return ToolResult.model_validate_json(row[0]) if row and row[0] is not None else None

    def _row(self, call_id: str) -> tuple[str | None] | None:
        try:
            with self._connection() as db:
                row: tuple[str | None] | None = db.execute(
                    "SELECT result FROM calls WHERE workspace = ? AND call_id = ?",
                    (self.workspace, call_id),
                ).fetchone()
        except (sqlite3.Error, OSError) as exc:  # an unusable log must not stop the tools
            log.warning("call log %s unreadable: %s", self.path, exc)
            return None
        return row

    def start(self, call_id: str) -> None:
        self._write(
            "INSERT OR IGNORE INTO calls (workspace, call_id, started_at) VALUES (?, ?, ?)",
            (self.workspace, call_id, time.time()),
        )

    def finish(self, result: ToolResult) -> None:
        self._write(
            "INSERT INTO calls (workspace, call_id, started_at, result) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (workspace, call_id) DO UPDATE SET result = excluded.result",
            (self.workspace, result.call_id, time.time(), result.model_dump_json()),
        )

    def _write(self, statement: str, values: tuple[object, ...]) -> None:
        try:
            with self._connection() as db:
                db.execute(statement, values)
                self._unpruned += 1
                if self._unpruned >= max(1, self.keep // 10):  # bounded, not pruned each write
                    self._prune(db)
                    self._unpruned = 0
        except (sqlite3.Error, OSError) as exc:  # an unusable log must not stop the tools
            log.warning("call log %s unwritable: %s", self.path, exc)

    def _prune(self, db: sqlite3.Connection) -> None:
        db.execute(
            "DELETE FROM calls WHERE workspace = ? AND call_id NOT IN (SELECT call_id FROM calls "
            "WHERE workspace = ? ORDER BY started_at DESC LIMIT ?)",
            (self.workspace, self.workspace, self.keep),
        )

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """One connection for the process, opened at first use (again after a failure); each
        use is one transaction."""
        with self._lock:
            db = self._db or self._open()
            try:
                with db:
                    yield db
            except (sqlite3.Error, OSError):
                self._db = None
                db.close()
                raise

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(private_file(self.path), timeout=10, check_same_thread=False)
        try:
            # WAL: a commit survives a killed process without an fsync each time (the side
            # files SQLite makes get the database's own 0600 mode).
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
        except sqlite3.Error:
            db.close()
            raise
        self._db = db
        return db
