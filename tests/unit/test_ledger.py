"""The epsilon ledger: budgets per dataset, spending by addition, refusals before the run with the remaining
budget, the same query under another name still spending, persistence across processes."""

from __future__ import annotations

import re
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from mpcnet.cluster import REPO_ROOT
from mpcnet.errors import InvalidInput
from mpcnet.ledger import BudgetExceeded, EpsilonLedger, LedgerUnusable


def test_spending_adds_up_and_a_release_past_the_budget_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with EpsilonLedger(path) as led:
        with pytest.raises(InvalidInput, match="no privacy budget"):
            led.charge("d", "q1", "laplace", {}, 1.0, 0.0)
        led.set_budget("d", 3.0, 1e-5)
        led.charge("d", "mean age", "laplace", {"sensitivity": 1}, 1.0, 0.0)
        led.charge("d", "mean age, again under another name", "laplace", {"sensitivity": 1}, 1.0, 0.0)
        assert led.spent("d") == (2.0, 0.0) and led.remaining("d") == (1.0, 1e-5)
        with pytest.raises(BudgetExceeded, match="which has epsilon 1, delta 1e-05 left"):
            led.charge("d", "big", "gaussian", {}, 1.5, 1e-6)
        assert len(led.releases("d")) == 2  # the refusal recorded nothing
        with pytest.raises(InvalidInput, match="cannot go below"):
            led.set_budget("d", 1.0, 1e-5)
        led.set_budget("d", 5.0, 1e-5)  # raising it is allowed
        led.charge("d", "big", "gaussian", {"z": 1.1}, 1.5, 1e-6)
    with EpsilonLedger(path) as again:  # on disk, across opens
        assert [r.name for r in again.releases("d")][-1] == "big" and again.spent("d")[0] == pytest.approx(3.5)
        assert again.releases("d")[-1].params == {"z": 1.1}


def test_ledger_cli_shows_budgets_and_releases(tmp_path: Path) -> None:
    path = str(tmp_path / "l.sqlite")
    run = [sys.executable, "-m", "mpcnet.cli", "ledger", "--ledger", path]
    out = subprocess.run([*run, "budget", "--dataset", "cohort-a", "--epsilon", "2", "--delta", "1e-6"],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert out.returncode == 0 and "cohort-a" in out.stdout
    with EpsilonLedger(path) as led:
        led.charge("cohort-a", "count", "laplace", {"sensitivity": 1}, 0.5, 0.0)
    show = subprocess.run([*run, "show", "--json"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert show.returncode == 0, show.stderr
    assert '"cohort-a"' in show.stdout and '"laplace"' in show.stdout and "0.5" in show.stdout
    bad = subprocess.run([*run, "budget", "--dataset", "cohort-a", "--epsilon", "0.1", "--delta", "0"],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert bad.returncode == 2 and "cannot go below" in bad.stderr and bad.stderr.count("\n") == 1  # one line
    typo = subprocess.run([*run, "show", "--dataset", "cohort-b"], capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=60)
    assert typo.returncode == 2 and "no dataset 'cohort-b'" in typo.stderr and "it has: cohort-a" in typo.stderr
    # --ledger also after the subcommand, as the README's `mpcnet ledger budget --ledger <path>` has it (it was
    # "unrecognized arguments"); the budget lands in that file
    after = subprocess.run([sys.executable, "-m", "mpcnet.cli", "ledger", "budget", "--ledger", path, "--dataset",
                            "cohort-c", "--epsilon", "1", "--delta", "0"], capture_output=True, text=True,
                           cwd=REPO_ROOT, timeout=60)
    assert after.returncode == 0, after.stdout + after.stderr
    with EpsilonLedger(path) as led:
        assert led.budget("cohort-c") == (1.0, 0.0)


def test_a_ledger_path_that_is_not_a_ledger_is_a_message_naming_it(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"not an sqlite file " * 200)
    with pytest.raises(InvalidInput, match=f"cannot open {garbage} as the epsilon ledger: file is not a database"):
        EpsilonLedger(garbage)
    for not_a_file in (tmp_path, Path("/dev/null")):  # /dev/null used to wait 10 s, then say "busy"
        with pytest.raises(InvalidInput, match=f"{not_a_file} is not a regular file: it cannot hold the epsilon "
                                               "ledger"):
            EpsilonLedger(not_a_file)
    missing = tmp_path / "typo" / "ledger.sqlite"
    with pytest.raises(InvalidInput, match=f"no epsilon ledger at {missing}"):
        EpsilonLedger(missing, create=False)  # what `ledger show` opens: a typo does not make a new, empty ledger
    assert not missing.parent.exists()
    with pytest.raises(InvalidInput, match="finite epsilon"):
        with EpsilonLedger(tmp_path / "l.sqlite") as led:
            led.set_budget("d", float("inf"), 0.0)
    monkeypatch.setenv("MPCNET_LEDGER", "")  # set but empty: the default file, not the working directory
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with EpsilonLedger() as led:
        assert led.path == tmp_path / "home" / ".mpcnet" / "epsilon-ledger.sqlite"


def test_ledger_cli_on_a_bad_file_says_so_in_one_line(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"\x00\xff" * 2000)
    for argv in (["show"], ["budget", "--dataset", "d", "--epsilon", "1", "--delta", "0"]):
        out = subprocess.run([sys.executable, "-m", "mpcnet.cli", "ledger", "--ledger", str(garbage), *argv],
                             capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert "as the epsilon ledger" in out.stderr and out.stderr.count("\n") == 1
    missing = subprocess.run([sys.executable, "-m", "mpcnet.cli", "ledger", "--ledger", str(tmp_path / "nope"),
                              "show"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert missing.returncode == 2 and "no epsilon ledger at" in missing.stderr
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize("create", [False, True])
def test_another_applications_sqlite_file_is_refused_and_left_as_it_was(tmp_path: Path, create: bool) -> None:
    import sqlite3
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE orders (id INTEGER)")
    before = other.read_bytes()
    with pytest.raises(InvalidInput, match="is not an epsilon ledger .*tables orders"):
        EpsilonLedger(other, create=create)
    assert other.read_bytes() == before and not (tmp_path / "other.sqlite-wal").exists()


def test_reading_a_ledger_never_writes_to_it(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with EpsilonLedger(path) as led:
        led.set_budget("d", 1.0, 0.0)
    with EpsilonLedger(path, create=False) as led:
        assert led.budget("d") == (1.0, 0.0)
        with pytest.raises(Exception, match="readonly"):
            led.set_budget("d", 2.0, 0.0)
    with pytest.raises(InvalidInput, match="default budget needs a finite epsilon"):
        with EpsilonLedger(path) as led:
            led.charge_all([("e", "r", "laplace", {}, 0.1, 0.0)], default_budget=(float("inf"), 0.0))


def test_a_refused_request_of_several_releases_quotes_the_balance_before_it_and_its_total(tmp_path: Path) -> None:
    """The refusal used to quote the balance after the request's own earlier (rolled-back) releases: 'which has
    epsilon 2 left' on a dataset that had spent nothing."""
    with EpsilonLedger(tmp_path / "l.sqlite") as led:
        both = [("d", "fedavg-secagg", "gaussian", {}, 8.0, 1e-5), ("d", "fedavg-plain", "gaussian", {}, 8.0, 1e-5)]
        with pytest.raises(BudgetExceeded) as refused:
            led.charge_all(both, default_budget=(10.0, 1e-4))
        assert str(refused.value) == ("refused: 'fedavg-plain' would spend epsilon 8, delta 1e-05 of dataset 'd', "
                                      "which has epsilon 10, delta 0.0001 left; the 2 releases of this request "
                                      "spend epsilon 16, delta 2e-05 of it together")
        assert led.releases() == [] and led.budget("d") is None
        led.set_budget("d", 9.0, 0.0)
        with pytest.raises(BudgetExceeded, match=r"^refused: 'one' would spend epsilon 9\.5, delta 0 of dataset 'd', "
                                                 r"which has epsilon 9, delta 0 left$"):
            led.charge("d", "one", "laplace", {}, 9.5, 0.0)


def test_charge_all_gives_each_release_the_balance_right_after_it(tmp_path: Path) -> None:
    """What a receipt quotes as the balance is read inside the charging transaction: a charge by someone else
    that lands after it does not show (the coordinator read the balance after commit, and a concurrent job's
    charge could be subtracted too)."""
    with EpsilonLedger(tmp_path / "l.sqlite") as led:
        led.set_budget("d", 10.0, 1e-5)
        first, second = led.charge_all([("d", "a", "m", {}, 0.5, 0.0), ("d", "b", "m", {}, 0.5, 1e-6)])
        led.charge("d", "someone else's", "m", {}, 2.0, 0.0)
        assert first.remaining_after == (9.5, 1e-5) and second.remaining_after == pytest.approx((9.0, 9e-6))
        assert led.remaining("d") == pytest.approx((7.0, 9e-6))
        with pytest.raises(InvalidInput, match=f"--ledger {tmp_path / 'l.sqlite'} --dataset other"):
            led.charge("other", "q", "m", {}, 1.0, 0.0)  # the fix names the file it means


def _bare_coordinator(tmp_path: Path, **env_extra: str) -> tuple[subprocess.Popen[str], str]:
    """A coordinator process of its own (no nodes, no dealer), with ``env_extra`` in its environment."""
    import os

    from mpcnet.cluster import free_port
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPCNET_")}
    env.update(PYTHONPATH=str(REPO_ROOT), MPCNET_LISTEN=address, **env_extra)
    proc = subprocess.Popen([sys.executable, "-m", "nodes.coordinator"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, address


def _wait_serving(proc: subprocess.Popen[str], address: str) -> None:
    import time

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            assert proc.poll() is None, proc.communicate(timeout=10)[1][-2000:]
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, "the coordinator did not come up"
            time.sleep(0.2)


def test_a_coordinator_ledger_in_its_state_directory_is_fine_on_a_fresh_host(tmp_path: Path) -> None:
    """The README's configuration puts the ledger in the state directory, which the journal makes at start: the
    missing-directory check comes after it (a review found the coordinator refusing to start there)."""
    state = tmp_path / "fresh" / "coordinator"
    proc, address = _bare_coordinator(tmp_path, MPCNET_STATE_DIR=str(state),
                                      MPCNET_LEDGER=str(state / "epsilon-ledger.sqlite"))
    try:
        _wait_serving(proc, address)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_fedavg_refuses_before_any_round_a_coordinator_that_cannot_keep_the_sum_from_clients(tmp_path: Path) -> None:
    """Without a cluster secret every caller counts as the operator, so sum_to_operator_only is refused, and
    FedAvg's pre-run check says so before anything is charged (it used to pass, and round 1 failed)."""
    from mpcnet.errors import FailedPrecondition
    from mpcnet.fl import fedavg
    proc, address = _bare_coordinator(tmp_path, MPCNET_STATE_DIR=str(tmp_path / "state"))
    try:
        _wait_serving(proc, address)
        agg = fedavg.SecAggAggregator(address, (), clip=1.0, max_total_samples=100)
        with pytest.raises(FailedPrecondition, match="sum_to_operator_only needs a cluster secret"):
            agg.check_reachable()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def test_a_coordinator_with_a_ledger_in_a_missing_directory_does_not_start(tmp_path: Path) -> None:
    """A mistyped [privacy] ledger / MPCNET_LEDGER directory would give every party a fresh budget: the
    coordinator refuses to start (configuration error, exit 2) and creates nothing."""
    import os
    missing = tmp_path / "ledgres" / "epsilon-ledger.sqlite"
    env = dict(os.environ, MPCNET_LEDGER=str(missing), PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.run([sys.executable, "-m", "nodes.coordinator", "--listen", "127.0.0.1:0"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "configuration error" in proc.stderr and f"the directory {missing.parent} does not exist" in proc.stderr
    assert not missing.parent.exists()


@pytest.mark.parametrize("edit, words", [
    ("UPDATE releases SET epsilon = 'abc' WHERE id = 1",
     "release(s) 1 spend an epsilon or delta that is not a number"),
    ("UPDATE releases SET params = '{not json' WHERE id = 2", "release(s) 2 are not ledger entries"),
    ("UPDATE releases SET params = 'null' WHERE id = 2", "release(s) 2 are not ledger entries"),
    ("UPDATE releases SET at = 'yesterday' WHERE id = 1", "release(s) 1 are not ledger entries"),
    # another dataset's row: what the file says was spent cannot be trusted for any of them
    ("UPDATE releases SET epsilon = -5, dataset = 'other' WHERE id = 1",
     "release(s) 1 spend an epsilon or delta that is not a number"),
    ("UPDATE releases SET epsilon = -5 WHERE id = 1", "release(s) 1 spend an epsilon or delta that is not a number"),
    ("UPDATE releases SET delta = -1e-3 WHERE id = 1", "release(s) 1 spend an epsilon or delta that is not a number"),
    ("UPDATE budgets SET epsilon = 'lots'", "the budget of dataset 'd' is not a number"),
])
def test_an_edited_amount_refuses_the_ledger_instead_of_undercounting(tmp_path: Path, edit: str, words: str) -> None:
    """SQLite's SUM counts text as 0 and a negative epsilon as budget given back: a ledger with 4 of 9 spent
    edited to 'abc' charged again as if 4 were never spent, and `ledger show` raised a traceback."""
    import sqlite3
    path = tmp_path / "l.sqlite"
    with EpsilonLedger(path) as led:
        led.set_budget("d", 10.0, 1e-4)
        led.charge("d", "first", "gaussian", {}, 4.0, 1e-6)
        led.charge("d", "second", "gaussian", {}, 5.0, 1e-6)
    db = sqlite3.connect(path)
    db.execute(edit)
    db.commit()
    db.close()
    with EpsilonLedger(path) as led:
        with pytest.raises(LedgerUnusable, match=re.escape(words)):
            led.charge("d", "third", "gaussian", {}, 1.0, 0.0)
        assert led.db.execute("SELECT COUNT(*) FROM releases").fetchone()[0] == 2  # nothing charged
    shown = subprocess.run([sys.executable, "-m", "mpcnet.cli", "ledger", "--ledger", str(path), "show"],
                           capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert shown.returncode == 2 and "Traceback" not in shown.stderr and words in " ".join(shown.stderr.split())
    assert shown.stdout == ""  # nothing printed before the refusal


def test_a_ledger_with_foreign_columns_or_parameters_is_refused_in_one_line(tmp_path: Path) -> None:
    import sqlite3
    columns = tmp_path / "columns.sqlite"
    db = sqlite3.connect(columns)
    db.executescript("CREATE TABLE budgets (dataset TEXT, size REAL); CREATE TABLE releases (id INTEGER, x TEXT);")
    db.close()
    with pytest.raises(LedgerUnusable, match="its table budgets lacks the columns created, delta, epsilon"):
        EpsilonLedger(columns)  # was sqlite3.OperationalError: no such column: epsilon, from `mpcnet fedavg`
    params = tmp_path / "params.sqlite"
    with EpsilonLedger(params) as led:
        led.set_budget("d", 10.0, 1e-4)
        led.charge("d", "first", "gaussian", {"a": 1}, 1.0, 0.0)
        led.db.execute("UPDATE releases SET params = '{not json'")
        with pytest.raises(LedgerUnusable, match=re.escape("release(s) 1 are not ledger entries")):
            led.releases()  # was json.JSONDecodeError, a traceback from `ledger show`
    with pytest.raises(InvalidInput, match="must not be empty"):
        with EpsilonLedger(params) as led:
            led.set_budget("", 1.0, 0.0)


def _spent_4_of_10(path: Path) -> None:
    """A ledger with one release, closed: all of it in the file itself (no -wal), as a copy or a restore has it."""
    with EpsilonLedger(path) as led:
        led.charge_all([("d", "first", "gaussian", {}, 4.0, 1e-6)], default_budget=(10.0, 1e-4))
    assert not Path(f"{path}-wal").exists()


@pytest.mark.parametrize("damage, words", [
    ("truncate", "exists but is empty, so it cannot serve as the epsilon ledger: a damaged ledger?"),
    ("DROP TABLE releases", "is a damaged or edited epsilon ledger: it lacks the table(s) releases"),
    ("DROP TABLE budgets", "is a damaged or edited epsilon ledger: it lacks the table(s) budgets"),
    ("DROP TABLE budgets; DROP TABLE releases", "is not an epsilon ledger (an SQLite file with no ledger tables)"),
])
def test_an_empty_or_partly_deleted_ledger_is_refused_not_started_again(tmp_path: Path, damage: str,
                                                                         words: str) -> None:
    """A ledger truncated to 0 bytes (a full disk, a bad restore, `> file`) or with a table dropped: the charging
    path made the schema again and the dataset got a fresh default budget (16 of 10 spent), while `ledger show`
    called the same file no ledger.  Both refuse it now, and leave it as it was."""
    import os
    import sqlite3
    path = tmp_path / "l.sqlite"
    _spent_4_of_10(path)
    if damage == "truncate":
        os.truncate(path, 0)
    else:
        with closing(sqlite3.connect(path)) as db:
            db.executescript(damage)
    before = path.read_bytes()
    for create in (True, False):
        with pytest.raises(LedgerUnusable, match=re.escape(f"{path} {words}")) as refused:
            with EpsilonLedger(path, create=create) as led:
                led.charge_all([("d", "again", "gaussian", {}, 4.0, 1e-6)], default_budget=(10.0, 1e-4))
        assert "move it away yourself" in str(refused.value)
    assert path.read_bytes() == before
    shown = subprocess.run([sys.executable, "-m", "mpcnet.cli", "ledger", "--ledger", str(path), "show"],
                           capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert shown.returncode == 2 and words in " ".join(shown.stderr.split()) and shown.stderr.count("\n") == 1


def test_fedavg_refuses_an_empty_ledger_instead_of_giving_the_dataset_a_fresh_budget(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mpcnet import cli
    ledger = tmp_path / "l.sqlite"
    ledger.touch()
    assert cli.main(["fedavg", "--rounds", "1", "--clients", "4", "--aggregator", "plain", "--epsilon", "1",
                     "--ledger", str(ledger)]) == 2
    out = capsys.readouterr()
    assert f"{ledger} exists but is empty" in " ".join(out.err.split()) and "test accuracy" not in out.out
    assert ledger.stat().st_size == 0


def test_a_full_disk_during_a_charge_names_the_disk_and_charges_nothing(tmp_path: Path) -> None:
    """SQLite rolls a transaction back by itself on SQLITE_FULL; the ledger's own ROLLBACK then failed, and its
    'cannot rollback - no transaction is active' replaced the reason the operator needed."""
    path = tmp_path / "l.sqlite"
    with EpsilonLedger(path) as led:
        led.set_budget("d", 10.0, 0.0)
        pages = led.db.execute("PRAGMA page_count").fetchone()[0]
        led.db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full, deterministically
        with pytest.raises(LedgerUnusable, match=f"the epsilon ledger {path} cannot be used: database or disk is "
                                                 "full; nothing was charged"):
            led.charge("d", "large", "laplace", {"padding": "x" * 50_000}, 1.0, 0.0)
        assert not led.db.in_transaction
    with EpsilonLedger(path, create=False) as led:
        assert led.releases() == [] and led.remaining("d") == (10.0, 0.0)


def test_an_sqlite_failure_after_the_open_is_the_ledgers_own_error_naming_the_file(tmp_path: Path) -> None:
    """One type for every caller: the coordinator mapped LedgerUnusable to FAILED_PRECONDITION but let a
    malformed page through as INTERNAL 'DatabaseError', with neither the ledger nor the reason in its log."""
    import sqlite3
    path = tmp_path / "l.sqlite"
    _spent_4_of_10(path)
    with closing(sqlite3.connect(path)) as db:
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'releases'").fetchone()[0]
    with open(path, "r+b") as f:
        f.seek((root - 1) * 4096)
        f.write(b"\xa5" * 200)
    with EpsilonLedger(path) as led:
        with pytest.raises(LedgerUnusable, match=f"the epsilon ledger {path} cannot be used: database disk image "
                                                 "is malformed; nothing was charged"):
            led.charge("d", "again", "gaussian", {}, 1.0, 0.0)
    with EpsilonLedger(path, create=False) as led:
        with pytest.raises(LedgerUnusable, match=f"the epsilon ledger {path} cannot be used: database disk image "
                                                 "is malformed$"):
            led.releases()


@pytest.mark.parametrize("budget, charges", [(0.3, 3), (1.0, 10)])
def test_an_exactly_spent_budget_shows_nothing_left_and_takes_no_more(tmp_path: Path, budget: float,
                                                                       charges: int) -> None:
    """0.3 spent as 3 x 0.1 left -5.6e-17 (`ledger show`: 'left -1.00031e-13' after one more tiny charge, which
    the tolerance for float sums let through on an exhausted budget); 1.0 as 10 x 0.1 leaves +1.1e-16, shown as
    0 yet open to a charge of 1e-12.  Every reader of the balance (receipts included) gets 0."""
    path = tmp_path / "l.sqlite"
    with EpsilonLedger(path) as led:
        led.set_budget("d", budget, 0.0)
        for i in range(charges):
            led.charge("d", f"q{i}", "laplace", {}, 0.1, 0.0)
        assert led.remaining("d") == (0.0, 0.0)
        for tiny in (1e-13, 1e-12, 4e-10):
            with pytest.raises(BudgetExceeded, match="which has epsilon 0, delta 0 left"):
                led.charge("d", "one more", "laplace", {}, tiny, 0.0)
    shown = subprocess.run([sys.executable, "-m", "mpcnet.cli", "ledger", "--ledger", str(path), "show"],
                           capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert shown.returncode == 0 and f"spent {budget:g}, 0; left 0, 0" in " ".join(shown.stdout.split())


def test_a_new_ledger_is_readable_by_its_owner_only_and_appears_whole(tmp_path: Path) -> None:
    """It holds every owner's balance, which the coordinator hides from other parties; it was 0644."""
    path = tmp_path / "l.sqlite"
    with EpsilonLedger(path) as led:
        led.set_budget("d", 1.0, 0.0)
        for f in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert f.stat().st_mode & 0o777 == 0o600, f
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.sqlite"]  # no draft left beside it


def test_ledger_show_reads_a_ledger_in_a_directory_it_cannot_write(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """WAL mode needs <file>-shm beside the ledger even to read it: `ledger show` of an audit copy on a read-only
    mount said only 'unable to open database file'."""
    import os

    from mpcnet.ledger import read_only_snapshot_uri
    path = tmp_path / "l.sqlite"
    _spent_4_of_10(path)
    assert read_only_snapshot_uri(path) is None  # a writable directory: the open failed for another reason
    monkeypatch.setattr(os, "access", lambda *_: False)
    assert read_only_snapshot_uri(path) == f"{path.resolve().as_uri()}?mode=ro&immutable=1"
    Path(f"{path}-wal").write_bytes(b"unmerged writes")  # immutable would not see them
    with pytest.raises(LedgerUnusable, match="beside a l.sqlite-wal that holds writes not yet in the ledger file"):
        read_only_snapshot_uri(path)


def test_ledger_show_on_a_read_only_mount(tmp_path: Path) -> None:
    """The same, end to end: a read-only bind mount in a mount namespace of its own (root and unshare only)."""
    import shutil
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        pytest.skip("needs unshare -m (root)")
    audit = tmp_path / "audit"
    audit.mkdir()
    _spent_4_of_10(audit / "l.sqlite")
    script = (f"mount --bind {audit} {audit} && mount -o remount,ro,bind {audit} && ! touch {audit}/probe && "
              f"exec {sys.executable} -m mpcnet.cli ledger --ledger {audit}/l.sqlite show")
    shown = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
                           timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "d: budget epsilon 10, delta 0.0001; spent 4, 1e-06; left 6" in " ".join(shown.stdout.split())
