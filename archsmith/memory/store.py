"""The run store: one SQLite database for every run, so a person can ask later what happened.

It records each run (request, spec, provider, sandbox, status, timings), each iteration (code,
architecture summary, fix attempts, metrics, fired rules, instructions, CM, whether it became the
best), each LLM call, each tool call and the artifacts on disk. Rows are written as the run goes,
each in its own transaction, so a crash loses nothing that finished. The schema is versioned with
``PRAGMA user_version`` and migrated forward on open; a database from a newer archsmith is refused
rather than guessed at. WAL mode lets ``archsmith runs`` read while a run writes.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archsmith.errors import InputError

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "RunStore",
    "StoreError",
    "ToolCallRecord",
    "process_alive",
]

log = logging.getLogger(__name__)

#: Each entry migrates the schema from version ``i`` to ``i + 1``; never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: runs, iterations, LLM calls
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        request TEXT NOT NULL,
        status TEXT NOT NULL,
        stop_reason TEXT,
        llm TEXT NOT NULL,
        base_url TEXT,
        sandbox TEXT NOT NULL,
        device TEXT NOT NULL,
        planner TEXT,
        spec TEXT,
        assumptions TEXT NOT NULL DEFAULT '[]',
        settings TEXT NOT NULL DEFAULT '{}',
        directory TEXT NOT NULL,
        max_iterations INTEGER,
        pid INTEGER,
        host TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE TABLE iterations (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        iteration INTEGER NOT NULL,
        status TEXT NOT NULL,
        summary TEXT NOT NULL DEFAULT '',
        code TEXT NOT NULL DEFAULT '',
        val_accuracy REAL,
        train_accuracy REAL,
        fps REAL,
        params INTEGER,
        val_energy_kwh_pue REAL,
        train_energy_kwh_pue REAL,
        combined_metric REAL,
        is_best INTEGER NOT NULL DEFAULT 0,
        seconds REAL,
        finished_at REAL,
        entry TEXT NOT NULL,
        PRIMARY KEY (run_id, iteration)
    );
    CREATE TABLE llm_calls (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        iteration INTEGER,
        role TEXT NOT NULL,
        model TEXT,
        prompt TEXT NOT NULL,
        response TEXT NOT NULL,
        latency_s REAL,
        input_tokens INTEGER,
        output_tokens INTEGER,
        PRIMARY KEY (run_id, seq)
    );
    """,
    # 1 -> 2: tool calls, artifacts, and stop requests from another terminal
    """
    CREATE TABLE tool_calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        iteration INTEGER,
        tool TEXT NOT NULL,
        args TEXT NOT NULL,
        ok INTEGER NOT NULL,
        error TEXT,
        result TEXT,
        duration_s REAL NOT NULL,
        backend TEXT NOT NULL,
        started_at REAL NOT NULL
    );
    CREATE INDEX tool_calls_run ON tool_calls (run_id, iteration);
    CREATE TABLE artifacts (
        run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
        iteration INTEGER,
        kind TEXT NOT NULL,
        path TEXT NOT NULL,
        bytes INTEGER,
        created_at REAL NOT NULL,
        PRIMARY KEY (run_id, kind, path)
    );
    ALTER TABLE runs ADD COLUMN stop_requested INTEGER NOT NULL DEFAULT 0;
    """,
    # 2 -> 3: the test split's figures, measured once when a run ends (best and Pareto fronts)
    """
    ALTER TABLE iterations ADD COLUMN test_accuracy REAL;
    ALTER TABLE iterations ADD COLUMN test TEXT;
    """,
    # 3 -> 4: where and when each candidate ran (parallel rounds on Ray: `run --workers N`)
    """
    ALTER TABLE iterations ADD COLUMN worker TEXT;
    ALTER TABLE iterations ADD COLUMN started_at REAL;
    ALTER TABLE iterations ADD COLUMN round INTEGER;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

_RUN_COLUMNS = (
    "run_id", "request", "status", "stop_reason", "llm", "base_url", "sandbox", "device",
    "planner", "spec", "assumptions", "settings", "directory", "max_iterations", "pid", "host",
    "created_at", "updated_at", "finished_at",
)  # fmt: skip
_JSON_RUN_FIELDS = ("spec", "assumptions", "settings")


class StoreError(InputError):
    """The run store cannot be used: damaged, from a newer archsmith, or not writable."""


@dataclass(frozen=True)
class ToolCallRecord:
    """One tool call as the tool runtime saw it."""

    tool: str
    args: dict[str, Any]
    ok: bool
    error: dict[str, Any] | None
    result: dict[str, Any] | None
    duration_s: float
    backend: str
    started_at: float
    #: The candidate that ran it, when the caller knows (parallel rounds); else the recorder's.
    iteration: int | None = None


def process_alive(pid: int | None, host: str | None) -> bool | None:
    """Whether the run's process still lives; None when it ran on another host (cannot tell)."""
    if pid is None:
        return False
    if host and host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _json(value: Any) -> str:
    return json.dumps(value, default=str)


def _explain(e: sqlite3.Error, path: Path, doing: str) -> StoreError:
    text = str(e)
    if isinstance(e, sqlite3.OperationalError) and "full" in text:
        return StoreError(
            f"the run store {path} is full (no space left on the device) while {doing}; nothing"
            " of this step was written. Free some space; a run resumes with `archsmith resume`."
        )
    if isinstance(e, sqlite3.DatabaseError) and (
        "not a database" in text or "malformed" in text or "corrupt" in text
    ):
        return StoreError(
            f"the run store {path} is damaged ({text}). Move it aside (mv {path} {path}.damaged);"
            " archsmith then starts a new store and re-imports each run's iterations and LLM calls"
            " from the checkpoints in its run directory."
        )
    if isinstance(e, sqlite3.OperationalError) and "readonly" in text:
        return StoreError(f"the run store {path} is read-only ({text}); set ARCHSMITH_STORE")
    return StoreError(f"the run store {path} failed while {doing}: {text}")


class RunStore:
    """Runs, iterations, LLM and tool calls, artifacts: written as they happen, read by the CLI."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._depth = 0
        # A run's parallel candidates record their tool calls from several threads: one
        # connection, used by one thread at a time (a transaction holds it to its end).
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(
                f"cannot create the run store's directory {self.path.parent}: {e}"
            ) from e
        try:
            self.conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise _explain(e, self.path, "opening it") from e
        self.conn.row_factory = sqlite3.Row
        try:
            self._prepare()
        except sqlite3.Error as e:
            self.conn.close()
            raise _explain(e, self.path, "opening it") from e
        except StoreError:
            self.conn.close()
            raise

    def _prepare(self) -> None:
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the run store {self.path} was written by a newer archsmith (schema {version};"
                f" this archsmith knows up to {SCHEMA_VERSION}). Upgrade archsmith, or set"
                " ARCHSMITH_STORE to another file to keep using this version."
            )
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute("PRAGMA busy_timeout = 30000")
        if version < SCHEMA_VERSION:
            self.migrate(version)
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self.conn.execute("PRAGMA journal_mode = WAL")

    def migrate(self, version: int, target: int = SCHEMA_VERSION) -> None:
        """Apply the migrations from ``version`` up to ``target`` in one transaction."""
        with self.transaction():
            # Another process may have migrated while we waited for the lock.
            current = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
            for step in range(max(version, current), target):
                log.info("migrating the run store %s to schema %d", self.path, step + 1)
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {step + 1}")

    def close(self) -> None:
        """Close the connection (the data is already on disk)."""
        self.conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, doing: str = "writing") -> Iterator[sqlite3.Connection]:
        """All the rows written inside are committed together or not at all; nests."""
        with self._lock, self._transaction(doing) as conn:
            yield conn

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise _explain(e, self.path, doing) from e
        self._depth = 1
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._rollback()
            raise _explain(e, self.path, doing) from e
        except BaseException:
            self._rollback()
            raise
        finally:
            self._depth = 0

    def _rollback(self) -> None:
        # SQLite may already have rolled back (a full disk does that); a second ROLLBACK would
        # raise and hide the error that matters.
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            with self._lock:
                return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise _explain(e, self.path, "reading") from e

    # -- writing ---------------------------------------------------------------------------

    def upsert_run(self, run: dict[str, Any]) -> None:
        """Insert the run or update the columns given (``run_id`` is required)."""
        values = {k: v for k, v in run.items() if k in _RUN_COLUMNS}
        for key in _JSON_RUN_FIELDS:
            if key in values:
                values[key] = _json(values[key])
        values.setdefault("updated_at", time.time())
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        updates = ", ".join(f"{c} = excluded.{c}" for c in values if c != "run_id")
        with self.transaction(f"saving run {run.get('run_id')}") as conn:
            conn.execute(
                f"INSERT INTO runs ({cols}) VALUES ({marks})"
                f" ON CONFLICT(run_id) DO UPDATE SET {updates}",
                list(values.values()),
            )

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Change some columns of a run that exists."""
        values = {k: v for k, v in fields.items() if k in _RUN_COLUMNS and k != "run_id"}
        for key in _JSON_RUN_FIELDS:
            if key in values:
                values[key] = _json(values[key])
        values["updated_at"] = time.time()
        assignments = ", ".join(f"{c} = ?" for c in values)
        with self.transaction(f"saving run {run_id}") as conn:
            conn.execute(
                f"UPDATE runs SET {assignments} WHERE run_id = ?", [*values.values(), run_id]
            )

    def set_status(
        self, run_id: str, status: str, stop_reason: str | None = None, *, pid: int | None = None
    ) -> None:
        """Record where the run stands; a finished run also gets its finish time."""
        now = time.time()
        finished = now if status in ("finished", "stopped", "crashed", "interrupted") else None
        with self.transaction(f"saving the status of run {run_id}") as conn:
            conn.execute(
                "UPDATE runs SET status = ?, stop_reason = COALESCE(?, stop_reason),"
                " updated_at = ?, finished_at = ?, pid = COALESCE(?, pid), host = ?,"
                " stop_requested = CASE WHEN ? = 'running' THEN 0 ELSE stop_requested END"
                " WHERE run_id = ?",
                (status, stop_reason, now, finished, pid, socket.gethostname(), status, run_id),
            )

    def record_iteration(
        self, run_id: str, entry: Mapping[str, Any], artifacts: Sequence[tuple[str, Path]] = ()
    ) -> None:
        """One finished iteration (a history entry) and its files; idempotent per iteration."""
        m = entry.get("metrics") or {}
        now = time.time()
        with self.transaction(f"saving iteration {entry.get('iteration')} of run {run_id}") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO iterations (run_id, iteration, status, summary, code,"
                " val_accuracy, train_accuracy, fps, params, val_energy_kwh_pue,"
                " train_energy_kwh_pue, combined_metric, is_best, seconds, finished_at, entry,"
                " worker, started_at, round)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id, int(entry["iteration"]), entry.get("status", "evaluated"),
                    entry.get("summary", ""), entry.get("code", ""), m.get("val_accuracy"),
                    m.get("train_accuracy"), m.get("fps"), m.get("params"),
                    m.get("val_energy_kwh_pue"), m.get("train_energy_kwh_pue"),
                    entry.get("combined_metric"), int(bool(entry.get("is_best"))),
                    entry.get("seconds"), entry.get("finished_at"), _json(entry),
                    entry.get("worker"), entry.get("started_at"), entry.get("round"),
                ),
            )  # fmt: skip
            for kind, path in artifacts:
                size = path.stat().st_size if path.is_file() else None
                conn.execute(
                    "INSERT OR REPLACE INTO artifacts (run_id, iteration, kind, path, bytes,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (run_id, int(entry["iteration"]), kind, str(path), size, now),
                )
            conn.execute("UPDATE runs SET updated_at = ? WHERE run_id = ?", (now, run_id))

    def record_llm_call(self, run_id: str, seq: int, call: dict[str, Any]) -> None:
        """One LLM exchange; ``seq`` is its index in the run's list, so a replay is a no-op."""
        with self.transaction(f"saving an LLM call of run {run_id}") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO llm_calls (run_id, seq, iteration, role, model, prompt,"
                " response, latency_s, input_tokens, output_tokens)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id, seq, call.get("iteration"), call.get("role", "architect"),
                    call.get("model"), call.get("prompt", ""), call.get("response", ""),
                    call.get("latency_s"), call.get("input_tokens"), call.get("output_tokens"),
                ),
            )  # fmt: skip

    def record_tool_call(self, run_id: str, iteration: int | None, call: ToolCallRecord) -> None:
        """One tool call; every call is kept, including ones redone after a resume."""
        with self.transaction(f"saving a {call.tool} call of run {run_id}") as conn:
            conn.execute(
                "INSERT INTO tool_calls (run_id, iteration, tool, args, ok, error, result,"
                " duration_s, backend, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id, iteration, call.tool, _json(call.args), int(call.ok),
                    _json(call.error) if call.error is not None else None,
                    _json(call.result) if call.result is not None else None,
                    call.duration_s, call.backend, call.started_at,
                ),
            )  # fmt: skip

    def add_artifact(
        self, run_id: str, kind: str, path: Path, iteration: int | None = None
    ) -> None:
        """A file made for the run (best code, report, export) that a person may look for."""
        size = path.stat().st_size if path.is_file() else None
        with self.transaction(f"saving an artifact of run {run_id}") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO artifacts (run_id, iteration, kind, path, bytes,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, iteration, kind, str(path), size, time.time()),
            )

    def request_stop(self, run_id: str) -> None:
        """Ask the process driving the run to stop after its current step."""
        with self.transaction(f"asking run {run_id} to stop") as conn:
            conn.execute("UPDATE runs SET stop_requested = 1 WHERE run_id = ?", (run_id,))

    def stop_requested(self, run_id: str) -> bool:
        """Whether someone ran ``archsmith stop`` on this run."""
        rows = self._read("SELECT stop_requested FROM runs WHERE run_id = ?", (run_id,))
        return bool(rows and rows[0][0])

    # -- reading ---------------------------------------------------------------------------

    def run_ids(self) -> list[str]:
        """Every run id, oldest first."""
        return [r[0] for r in self._read("SELECT run_id FROM runs ORDER BY created_at, run_id")]

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """The run's row with its JSON fields decoded and its summary (``_RUN_SUMMARY``), or
        None: ``show`` gives the same headline numbers as ``runs``."""
        rows = self._read(_RUN_SUMMARY + " WHERE r.run_id = ?", (run_id,))
        return _run_row(rows[0]) if rows else None

    def list_runs(self) -> list[dict[str, Any]]:
        """Every run with its iteration count and best candidate's headline numbers."""
        rows = self._read(_RUN_SUMMARY + " ORDER BY r.created_at, r.run_id")
        return [_run_row(r) for r in rows]

    def iterations(self, run_id: str) -> list[dict[str, Any]]:
        """The run's history entries in order, as the graph recorded them, each with ``test``:
        its test-split figures when it was measured on it at the end of the run, else None."""
        rows = self._read(
            "SELECT entry, test FROM iterations WHERE run_id = ? ORDER BY iteration", (run_id,)
        )
        return [{**json.loads(r[0]), "test": json.loads(r[1]) if r[1] else None} for r in rows]

    def record_test(self, run_id: str, iteration: int, result: dict[str, Any]) -> None:
        """One candidate's figures on the test split (``nodes.final_test``); idempotent."""
        accuracy = result.get("test_accuracy") if result.get("ok") else None
        with self.transaction(f"saving the test figures of iteration {iteration}") as conn:
            conn.execute(
                "UPDATE iterations SET test_accuracy = ?, test = ? WHERE run_id = ? AND"
                " iteration = ?",
                (accuracy, _json(result), run_id, iteration),
            )

    def llm_calls(self, run_id: str, iteration: int | None = None) -> list[dict[str, Any]]:
        """The run's LLM calls in order (one iteration's when given)."""
        sql = "SELECT * FROM llm_calls WHERE run_id = ?"
        params: list[Any] = [run_id]
        if iteration is not None:
            sql += " AND iteration = ?"
            params.append(iteration)
        return [dict(r) for r in self._read(sql + " ORDER BY seq", params)]

    def tool_calls(self, run_id: str, iteration: int | None = None) -> list[dict[str, Any]]:
        """The run's tool calls in order (one iteration's when given)."""
        sql = "SELECT * FROM tool_calls WHERE run_id = ?"
        params: list[Any] = [run_id]
        if iteration is not None:
            sql += " AND iteration = ?"
            params.append(iteration)
        out = []
        for r in self._read(sql + " ORDER BY id", params):
            row = dict(r)
            row["ok"] = bool(row["ok"])
            for key in ("args", "error", "result"):
                row[key] = json.loads(row[key]) if row[key] is not None else None
            out.append(row)
        return out

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        """Files recorded for the run."""
        rows = self._read(
            "SELECT * FROM artifacts WHERE run_id = ? ORDER BY created_at, path", (run_id,)
        )
        return [dict(r) for r in rows]


#: A run's row with its iteration count and its best candidate's headline numbers: the one
#: summary ``runs`` lists and ``show`` reads.
_RUN_SUMMARY = (
    "SELECT r.*, (SELECT COUNT(*) FROM iterations i WHERE i.run_id = r.run_id) AS done,"
    " b.iteration AS best_iteration, b.val_accuracy AS best_val_accuracy,"
    " b.fps AS best_fps, b.combined_metric AS best_cm, b.params AS best_params,"
    " b.test_accuracy AS best_test_accuracy"
    " FROM runs r LEFT JOIN iterations b ON b.rowid = ("
    "   SELECT rowid FROM iterations i WHERE i.run_id = r.run_id AND i.is_best = 1"
    "   ORDER BY i.iteration DESC LIMIT 1)"
)


def _run_row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    for key in _JSON_RUN_FIELDS:
        if data.get(key) is not None:
            data[key] = json.loads(data[key])
    data["stop_requested"] = bool(data.get("stop_requested"))
    alive = (
        process_alive(data.get("pid"), data.get("host")) if data["status"] == "running" else None
    )
    if data["status"] == "running" and alive is False:
        # The process died without saying so (kill -9, power loss): a resumable crash.
        data["status"] = "crashed"
        data["stop_reason"] = data.get("stop_reason") or "the process ended without a word"
    data["alive"] = alive
    end = data.get("finished_at") or (data["updated_at"] if data["status"] != "running" else None)
    data["duration_s"] = (end or time.time()) - data["created_at"]
    return data
