"""Durable state of the coordinator and the dealer: SQLite (stdlib) in WAL mode, synchronous=FULL.

Coordinator journal (``<state_dir>/coordinator.sqlite``):
  * parties: name -> SHA-256 of its token (never the token), so a party keeps its identity across a restart;
  * jobs: the JobInfo (no values: shapes, owners, outputs, error, receipt) and the triple batch it consumed;
  * rounds: SecAgg rounds' parameters, state and outcome (the aggregate of a done round, the reason of an
    aborted one) and the SHA-256 of each client token (for GetResult after a restart).
On start-up (:meth:`CoordinatorJournal.recover`) a job that was running is marked failed and a round that was
running is marked aborted: neither is ever resumed (a round's masks and keys lived in memory only, and a
resumed round could mix stale and fresh masks).

Dealer ledger (``<state_dir>/dealer.sqlite``): every batch it issued (batch id, job id, time), so that it never
issues a second batch for a job, whether it restarted in between or not.

Each write is one transaction; a SIGKILL at any point leaves either the old or the new row.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


def _open(path: Path, schema: str) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db


@dataclass(frozen=True, slots=True)
class JournalRound:
    round_id: str
    state: str           # running | done | aborted
    params: bytes        # SecAggRoundParams
    outcome: bytes       # SecAggDone (done) or SecAggAborted (aborted), b"" while running
    token_hashes: dict[int, bytes]


class CoordinatorJournal:
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS parties (name TEXT PRIMARY KEY, token_sha256 BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, state TEXT NOT NULL, info BLOB NOT NULL,
                                     batch_id TEXT NOT NULL DEFAULT '', updated REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS rounds (round_id TEXT PRIMARY KEY, state TEXT NOT NULL, params BLOB NOT NULL,
                                       outcome BLOB NOT NULL, updated REAL NOT NULL);
    CREATE TABLE IF NOT EXISTS round_tokens (round_id TEXT NOT NULL, client_id INTEGER NOT NULL,
                                             token_sha256 BLOB NOT NULL, PRIMARY KEY (round_id, client_id));
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = _open(self.path, self.SCHEMA)

    def close(self) -> None:
        self.db.close()

    # parties
    def put_party(self, name: str, token_sha256: bytes) -> None:
        self.db.execute("INSERT INTO parties VALUES (?, ?)", (name, token_sha256))

    def parties(self) -> dict[str, bytes]:
        return {n: bytes(h) for n, h in self.db.execute("SELECT name, token_sha256 FROM parties")}

    # jobs
    def put_job(self, job_id: str, state: str, info: bytes, batch_id: str = "") -> None:
        self.db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET state=excluded.state,"
                        " info=excluded.info, batch_id=CASE WHEN excluded.batch_id != '' THEN excluded.batch_id "
                        "ELSE jobs.batch_id END, updated=excluded.updated",
                        (job_id, state, info, batch_id, time.time()))

    def jobs(self) -> list[tuple[str, str, bytes, str]]:
        return [(j, s, bytes(i), b) for j, s, i, b in
                self.db.execute("SELECT job_id, state, info, batch_id FROM jobs ORDER BY updated")]

    # rounds
    def put_round(self, round_id: str, state: str, params: bytes, outcome: bytes = b"",
                  token_hashes: dict[int, bytes] | None = None) -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("INSERT INTO rounds VALUES (?, ?, ?, ?, ?) ON CONFLICT(round_id) DO UPDATE SET "
                            "state=excluded.state, params=excluded.params, outcome=excluded.outcome, "
                            "updated=excluded.updated", (round_id, state, params, outcome, time.time()))
            if token_hashes:
                self.db.executemany("INSERT OR REPLACE INTO round_tokens VALUES (?, ?, ?)",
                                    [(round_id, cid, h) for cid, h in token_hashes.items()])

    def round(self, round_id: str) -> JournalRound | None:
        row = self.db.execute("SELECT state, params, outcome FROM rounds WHERE round_id = ?", (round_id,)).fetchone()
        if row is None:
            return None
        tokens = {int(c): bytes(h) for c, h in self.db.execute(
            "SELECT client_id, token_sha256 FROM round_tokens WHERE round_id = ?", (round_id,))}
        return JournalRound(round_id, row[0], bytes(row[1]), bytes(row[2]), tokens)

    def round_ids(self) -> list[str]:
        return [r for (r,) in self.db.execute("SELECT round_id FROM rounds")]

    def recover(self, failed_job_info: Callable[[bytes], bytes], aborted_round: Callable[[bytes], bytes]
                ) -> tuple[list[str], list[str]]:
        """Mark what a crash interrupted: running jobs failed, running rounds aborted; returns their ids.
        ``failed_job_info(info)`` / ``aborted_round(params)`` give the rewritten JobInfo / SecAggAborted."""
        jobs = [j for j, s, _, _ in self.jobs() if s == "running"]
        rounds = [r for (r,) in self.db.execute("SELECT round_id FROM rounds WHERE state = 'running'")]
        with self.db:
            self.db.execute("BEGIN")
            for job_id in jobs:
                (info,) = self.db.execute("SELECT info FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
                self.db.execute("UPDATE jobs SET state = 'failed', info = ?, updated = ? WHERE job_id = ?",
                                (failed_job_info(bytes(info)), time.time(), job_id))
            for round_id in rounds:
                (params,) = self.db.execute("SELECT params FROM rounds WHERE round_id = ?", (round_id,)).fetchone()
                self.db.execute("UPDATE rounds SET state = 'aborted', outcome = ?, updated = ? WHERE round_id = ?",
                                (aborted_round(bytes(params)), time.time(), round_id))
        return jobs, rounds


class DealerLedger:
    SCHEMA = """
    CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, job_id TEXT NOT NULL UNIQUE,
                                        items INTEGER NOT NULL, issued REAL NOT NULL);
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.db = _open(self.path, self.SCHEMA)

    def close(self) -> None:
        self.db.close()

    def issued_for(self, job_id: str) -> str | None:
        row = self.db.execute("SELECT batch_id FROM batches WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else str(row[0])

    def record(self, batch_id: str, job_id: str, items: int) -> None:
        self.db.execute("INSERT INTO batches VALUES (?, ?, ?, ?)", (batch_id, job_id, items, time.time()))

    def batch_ids(self) -> list[str]:
        return [b for (b,) in self.db.execute("SELECT batch_id FROM batches ORDER BY issued")]


__all__ = ["CoordinatorJournal", "DealerLedger", "JournalRound"]
