"""mpcnet/journal.py: what survives a crash, as plain function calls on SQLite files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mpcnet.journal import CoordinatorJournal, DealerLedger


def test_coordinator_journal_survives_reopening_and_marks_interrupted_work(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    j = CoordinatorJournal(path)
    assert j.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    j.put_party("alice", b"h" * 32)
    j.put_job("job-1", "open", b"info-1")
    j.put_job("job-1", "running", b"info-1b", "batch-9")
    j.put_job("job-1", "running", b"info-1c")  # a later write without a batch id keeps the batch id
    j.put_job("job-2", "done", b"info-2", "batch-3")
    j.put_round("r1", "done", b"params-1", b"sum", {1: b"a" * 32})
    j.put_round("r2", "running", b"params-2", b"", {1: b"b" * 32, 2: b"c" * 32})
    j.close()
    j = CoordinatorJournal(path)  # what a restarted coordinator reads
    jobs, rounds = j.recover(lambda info: info + b"+failed", lambda params: b"aborted:" + params)
    assert (jobs, rounds) == (["job-1"], ["r2"])
    assert {job_id: (s, i, b) for job_id, s, i, b in j.jobs()} == {
        "job-1": ("failed", b"info-1c+failed", "batch-9"), "job-2": ("done", b"info-2", "batch-3")}
    assert j.parties() == {"alice": b"h" * 32}
    r1, r2 = j.round("r1"), j.round("r2")
    assert r1 is not None and (r1.state, r1.outcome, r1.token_hashes) == ("done", b"sum", {1: b"a" * 32})
    assert r2 is not None and (r2.state, r2.outcome) == ("aborted", b"aborted:params-2")
    assert sorted(r2.token_hashes) == [1, 2]
    assert j.round("nope") is None
    assert j.recover(lambda i: i, lambda p: p) == ([], [])  # nothing is interrupted twice
    with pytest.raises(sqlite3.IntegrityError):
        j.put_party("alice", b"x" * 32)  # a name is registered once, restart or not


def test_dealer_ledger_never_records_two_batches_for_one_job(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    led = DealerLedger(path)
    led.record("b1", "job-1", 3)
    led.record("b2", "job-2", 1)
    with pytest.raises(sqlite3.IntegrityError):
        led.record("b3", "job-1", 3)
    led.close()
    led = DealerLedger(path)
    assert led.batch_ids() == ["b1", "b2"] and led.issued_for("job-1") == "b1" and led.issued_for("job-9") is None
