"""The epsilon ledger: every differentially private release, per dataset, in SQLite (stdlib, WAL mode).

A dataset (or cohort) has a budget (epsilon, delta).  Each release records its mechanism, parameters and the
(epsilon, delta) it spends, keyed by the dataset -- not by the job or run name, so the same query re-submitted
under another name spends again.  Spending composes by addition (basic composition: conservative, and valid
whatever the mechanisms were); a release that would take the total past the budget is refused before it
starts, with the remaining budget in the message.  The charge is taken before the computation runs: a run that
fails halfway may already have released noisy values, so its budget is never given back.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import secrets
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from mpcnet.errors import InvalidInput, MpcnetError

BUSY_TIMEOUT_S = 10.0  # how long a write waits for another process's write transaction before LedgerBusy
OVERRUN_ATTEMPTS = 6  # an overrun already happened: it waits this many busy timeouts before giving up

SCHEMA = """
CREATE TABLE IF NOT EXISTS budgets (dataset TEXT PRIMARY KEY, epsilon REAL NOT NULL, delta REAL NOT NULL,
                                    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS releases (id INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL,
                                     name TEXT NOT NULL, mechanism TEXT NOT NULL, params TEXT NOT NULL,
                                     epsilon REAL NOT NULL, delta REAL NOT NULL, at REAL NOT NULL);
"""


def default_path() -> Path:
    return Path(os.environ.get("MPCNET_LEDGER") or Path.home() / ".mpcnet" / "epsilon-ledger.sqlite")


def check_chosen_location(path: str | None, flag: str = "--ledger") -> None:
    """For the CLIs, before any work: a ledger path someone chose (--ledger, MPCNET_LEDGER) must be in a directory
    that exists.  Only ~/.mpcnet is made on demand: a mistyped directory would otherwise start a fresh ledger with
    a fresh budget, and the run would spend from that instead of the dataset's real one."""
    if path is not None and not path.strip():  # an empty --ledger "" would quietly mean the default ledger
        raise InvalidInput(f"{flag} is empty: give the ledger's file, or leave {flag} out for the default")
    chosen = path or os.environ.get("MPCNET_LEDGER")
    if chosen and not Path(chosen).parent.is_dir():
        where = flag if path else "MPCNET_LEDGER"
        raise InvalidInput(f"{where} {chosen}: the directory {Path(chosen).parent} does not exist (a new ledger there "
                           "would start with a fresh budget); create it first, or fix the path")


def read_only_snapshot_uri(path: Path) -> str | None:
    """How `mpcnet ledger show` reads a ledger in a directory it cannot write (an audit copy, a read-only mount),
    where the plain read-only open failed: SQLite's WAL mode must create <file>-shm beside it even to read.
    Opened immutable, SQLite needs no -shm and takes no locks: safe where nothing can write (a writer through
    another, writable mount of the directory could change the file under the reader: run `show` again if it
    fails), but it would not see a -wal's writes, so a -wal holding any is refused.  None: the directory is
    writable, so the open failed for another reason."""
    if os.access(path.parent, os.W_OK):
        return None
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise LedgerUnusable(f"{path} is in a directory that cannot be written, beside a {wal.name} that holds "
                             "writes not yet in the ledger file, and SQLite cannot read those without creating "
                             f"{path.name}-shm there; copy {path.name} with its {wal.name} to a writable directory "
                             "and show that copy")
    return f"{path.resolve().as_uri()}?mode=ro&immutable=1"


# below these a balance is float rounding: 0.3 spent as 3 x 0.1 leaves -5.6e-17, which printed reads as an overrun
_EPSILON_ROUNDING, _DELTA_ROUNDING = 1e-9, 1e-15


def shown_balance(epsilon_left: float, delta_left: float) -> tuple[float, float]:
    """A balance as printed for people: what float rounding leaves of an exactly spent budget is 0."""
    return (0.0 if abs(epsilon_left) < _EPSILON_ROUNDING else epsilon_left,
            0.0 if abs(delta_left) < _DELTA_ROUNDING else delta_left)


class BudgetExceeded(InvalidInput):
    """The release would spend more than the dataset's remaining budget (``dataset`` and ``release`` kept apart
    from the message, which states the balance, for a caller who may not see it)."""

    def __init__(self, message: str, dataset: str = "", release: str = "") -> None:
        super().__init__(message)
        self.dataset, self.release = dataset, release


@dataclass(frozen=True)
class Release:
    id: int
    dataset: str
    name: str
    mechanism: str
    params: dict[str, Any]
    epsilon: float
    delta: float
    at: float
    # the dataset's (epsilon, delta) left right after this release, read in the transaction that recorded it
    # (charge_all only; None when read back from the ledger)
    remaining_after: tuple[float, float] | None = None


LEDGER_TABLES = frozenset({"budgets", "releases"})
LEDGER_COLUMNS = {"budgets": {"dataset", "epsilon", "delta", "created"},
                  "releases": {"id", "dataset", "name", "mechanism", "params", "epsilon", "delta", "at"}}
# a row whose spending is not a number >= 0 (hand-edited, or another program's): SUM() would count text as 0 and a
# negative epsilon as budget given back, so such a ledger is refused rather than under-counted
_BAD_AMOUNT = ("NOT (typeof(epsilon) IN ('real', 'integer') AND typeof(delta) IN ('real', 'integer') "
               "AND epsilon >= 0 AND delta >= 0)")
# a release row out of the shape the ledger writes: its parameters no JSON object, its time no number
_BAD_ENTRY = ("NOT (json_valid(params) AND json_type(params) = 'object' "
              "AND typeof(at) IN ('real', 'integer'))")


class NoBudget(InvalidInput):
    """A dataset without a budget, where none is given by default."""

    def __init__(self, message: str, dataset: str) -> None:
        super().__init__(message)
        self.dataset = dataset


class LedgerBusy(MpcnetError):
    """Another process held the ledger's write lock longer than the busy timeout: nothing was written; the
    same request can simply be made again (a transaction conflict: gRPC's ABORTED, not UNAVAILABLE, which
    callers read as an unreachable server)."""

    status = "ABORTED"


def _locked(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))


class LedgerUnusable(InvalidInput):
    """The file cannot serve as the ledger: not SQLite, another application's database, or unopenable.
    The message names the path: for the person who chose it, not for remote callers of a coordinator."""


def _amount(value: Any, what: str) -> float:
    """A spending or budget figure as the float SQLite stores as REAL: numpy scalars would be stored as BLOBs (and
    then refuse the ledger as edited), a bool would pass for 0 or 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInput(f"{what} must be a real number, got {type(value).__name__}")
    return float(value)


def _check_dataset_name(dataset: str) -> None:
    if not isinstance(dataset, str) or not dataset.strip():
        raise InvalidInput("a dataset's name in the ledger must not be empty (--dataset)")


class EpsilonLedger:
    """The ledger at ``path`` (default: MPCNET_LEDGER, else ~/.mpcnet/epsilon-ledger.sqlite).  ``create=False``
    (reading commands): the file is opened read-only and must already be a ledger -- a missing file is an error
    rather than a new empty ledger, so a mistyped path is not mistaken for a dataset that spent nothing, and
    nothing is ever written into another application's database.  ``create=True`` makes a new ledger only where
    no file exists: an existing file without the ledger's tables is a damaged ledger, not a new one.  A file that
    cannot serve, or an SQLite failure once it is open, is a :class:`LedgerUnusable` naming the path.

    Several processes may share one ledger (runs started at the same time, a coordinator and `mpcnet ledger`):
    every check-then-write is one SQLite ``BEGIN IMMEDIATE`` transaction, so two runs can never both fit in the
    same remaining budget.  A write waits up to ``busy_timeout_s`` for another process's write, then raises
    :class:`LedgerBusy`."""

    def __init__(self, path: str | os.PathLike[str] | None = None, create: bool = True,
                 busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path) if path else default_path()
        self.busy_timeout_s = busy_timeout_s
        if not create and not self.path.is_file():
            raise InvalidInput(f"no epsilon ledger at {self.path}: setting a budget (`mpcnet ledger budget`) or the "
                               "first DP release makes one; --ledger or MPCNET_LEDGER chooses another file")
        if self.path.exists() and not self.path.is_file():  # /dev/null, a directory, a FIFO
            raise LedgerUnusable(f"{self.path} is not a regular file: it cannot hold the epsilon ledger; choose "
                                 "another file with --ledger or MPCNET_LEDGER")
        try:
            if create and not self.path.exists():
                self._create_new()
            if self.path.stat().st_size == 0:  # opened, SQLite would take it for a new, empty database
                raise LedgerUnusable(f"{self.path} exists but is empty, so it cannot serve as the epsilon ledger: a "
                                     "damaged ledger? What it recorded as spent is gone, and a new ledger would start "
                                     "every budget again; restore it from a backup, or move it away yourself to "
                                     "start a new one")
            if create:
                self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=busy_timeout_s)
                tables = self._tables()
            else:
                try:
                    self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                              isolation_level=None, timeout=busy_timeout_s)
                    tables = self._tables()
                except sqlite3.Error as exc:
                    if hasattr(self, "db"):
                        self.db.close()
                    snapshot = None if _locked(exc) else read_only_snapshot_uri(self.path)
                    if snapshot is None:
                        raise
                    self.db = sqlite3.connect(snapshot, uri=True, isolation_level=None, timeout=busy_timeout_s)
                    tables = self._tables()
        except (OSError, sqlite3.Error) as exc:
            if hasattr(self, "db"):
                self.db.close()
            if isinstance(exc, sqlite3.Error) and _locked(exc):
                raise self._busy("read") from None
            raise LedgerUnusable(f"cannot open {self.path} as the epsilon ledger: {exc}") from None
        try:
            self._check_tables(tables)
        except BaseException:
            self.db.close()
            raise
        if create:
            # Switching a file to WAL can fail at once ("locked", no busy wait) while another process is doing the
            # same (ledgers are made in WAL mode now; older ones may not be): retry for up to the busy timeout.
            deadline = time.monotonic() + busy_timeout_s
            while True:
                try:
                    self.db.execute("PRAGMA journal_mode=WAL")
                    self.db.execute("PRAGMA synchronous=FULL")
                    break
                except sqlite3.Error as exc:
                    if _locked(exc) and time.monotonic() < deadline:
                        time.sleep(0.02)
                        continue
                    self.db.close()
                    if _locked(exc):
                        raise self._busy("opened") from None
                    raise LedgerUnusable(f"cannot use {self.path} as the epsilon ledger: {exc}") from None

    def _create_new(self) -> None:
        """Make a new ledger whole before it appears at its path: built in a draft file beside it, then linked into
        place.  So no process ever finds a ledger file without its tables -- which is what a damaged one looks
        like, and is refused.  Of two processes making it at once, the first link wins and the other uses it.
        The file is 0600 (SQLite gives its -wal and -shm the same mode): it holds every owner's balance."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        draft = self.path.with_name(f".{self.path.name}.new-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.close(os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            db = sqlite3.connect(str(draft), isolation_level=None)
            try:
                db.executescript(SCHEMA)
                db.execute("PRAGMA journal_mode=WAL")  # after the tables: they are in the file, not in its -wal
            finally:
                db.close()
            try:
                os.link(draft, self.path)
            except FileExistsError:
                pass  # another process made the ledger first
        finally:
            for leftover in ("", "-journal", "-wal", "-shm"):
                Path(f"{draft}{leftover}").unlink(missing_ok=True)

    def _tables(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _check_tables(self, tables: set[str]) -> None:
        """An existing file is used only when it holds the ledger's tables and nothing else: the schema is written
        only into a new file, so a ledger with a table dropped is not quietly recreated with its spending gone."""
        foreign = sorted(tables - LEDGER_TABLES - {"sqlite_sequence"})
        if foreign:
            raise LedgerUnusable(f"{self.path} is not an epsilon ledger (an SQLite file with tables "
                                 f"{', '.join(foreign)}): choose another file with --ledger or MPCNET_LEDGER")
        missing = sorted(LEDGER_TABLES - tables)
        if missing and tables & LEDGER_TABLES:
            raise LedgerUnusable(f"{self.path} is a damaged or edited epsilon ledger: it lacks the table(s) "
                                 f"{', '.join(missing)}, so what it recorded as spent is gone; restore it from a "
                                 "backup, or move it away yourself to start a new one (every budget starts again)")
        if missing:
            raise LedgerUnusable(f"{self.path} is not an epsilon ledger (an SQLite file with no ledger tables): "
                                 "choose another file with --ledger or MPCNET_LEDGER (a new ledger is made only "
                                 "where no file exists), or, if it is a damaged ledger, move it away yourself to "
                                 "start a new one there")
        for table in sorted(tables & LEDGER_TABLES):  # the ledger's names, another program's columns
            columns = {row[1] for row in self._rows(f"PRAGMA table_info({table})")}
            if not LEDGER_COLUMNS[table] <= columns:
                raise LedgerUnusable(f"{self.path} is not an epsilon ledger: its table {table} lacks the columns "
                                     f"{', '.join(sorted(LEDGER_COLUMNS[table] - columns))}; choose another file "
                                     "with --ledger or MPCNET_LEDGER")

    def close(self) -> None:
        self.db.close()

    def _busy(self, what: str) -> LedgerBusy:
        return LedgerBusy(f"the epsilon ledger {self.path} is busy: another process held its write lock for more "
                          f"than {self.busy_timeout_s:g} s, so nothing was {what}; try again")

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """One write transaction.  BEGIN IMMEDIATE takes the write lock before the first read, so what the body
        checks (the balance) is still true when it writes; everything or nothing is written."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failed(exc, what) from None
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException as exc:
            # SQLite has already rolled back after some errors (SQLITE_FULL, some I/O errors): a second ROLLBACK
            # would fail, and its "no transaction is active" would replace the reason
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._failed(exc, what) from None
            raise

    def _failed(self, exc: sqlite3.Error, what: str) -> MpcnetError:
        """An SQLite error after the open (a full disk, a malformed page) as the ledger's own error, naming the file
        and the reason, so that every caller handles one type."""
        if _locked(exc):
            return self._busy(what)
        undone = "" if what == "read" else f"; nothing was {what}"
        return LedgerUnusable(f"the epsilon ledger {self.path} cannot be used: {exc}{undone}")

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Every read comes through here (see _failed); inside a write transaction, _writing says what was not
        written."""
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            if self.db.in_transaction:
                raise
            raise self._failed(exc, "read") from None

    def __enter__(self) -> "EpsilonLedger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_budget(self, dataset: str, epsilon: float, delta: float) -> None:
        """Set (or change) the budget; a budget below what is already spent is refused."""
        epsilon, delta = _amount(epsilon, "a budget's epsilon"), _amount(delta, "a budget's delta")
        if not (0 < epsilon < math.inf and 0 <= delta < 1):
            raise InvalidInput(f"a budget needs a finite epsilon > 0 and 0 <= delta < 1, got epsilon {epsilon:g}, "
                               f"delta {delta:g}")
        _check_dataset_name(dataset)
        with self._writing("changed"):  # no charge can land between the check and the update
            eps, dl = self.spent(dataset)
            if eps > epsilon or dl > delta:
                raise InvalidInput(f"dataset {dataset!r} has already spent epsilon {eps:g}, delta {dl:g}: the "
                                   "budget cannot go below that")
            self.db.execute("INSERT INTO budgets VALUES (?, ?, ?, ?) ON CONFLICT(dataset) DO UPDATE SET "
                            "epsilon = excluded.epsilon, delta = excluded.delta",
                            (dataset, epsilon, delta, time.time()))

    def budget(self, dataset: str) -> tuple[float, float] | None:
        rows = self._rows(f"SELECT epsilon, delta, {_BAD_AMOUNT} FROM budgets WHERE dataset = ?", (dataset,))
        row = rows[0] if rows else None
        if row and row[2]:
            raise LedgerUnusable(f"{self.path}: the budget of dataset {dataset!r} is not a number >= 0 (epsilon "
                                 f"{row[0]!r}, delta {row[1]!r}): the ledger was edited; set it again with "
                                 f"`mpcnet ledger budget --ledger {self.path} --dataset {dataset} --epsilon E "
                                 "--delta D`")
        return (float(row[0]), float(row[1])) if row else None

    def spent(self, dataset: str) -> tuple[float, float]:
        self._check_rows()
        (row,) = self._rows("SELECT COALESCE(SUM(epsilon), 0), COALESCE(SUM(delta), 0) FROM releases "
                            "WHERE dataset = ?", (dataset,))
        return float(row[0]), float(row[1])

    def _check_rows(self) -> None:
        """Every release row of the file, whichever dataset is asked about: an edit out of shape anywhere means
        what the file says was spent cannot be trusted (one scan; a ledger holds thousands of rows, not
        millions)."""
        bad = [r[0] for r in self._rows(f"SELECT id FROM releases WHERE {_BAD_AMOUNT} ORDER BY id LIMIT 5")]
        if bad:
            raise LedgerUnusable(f"{self.path}: release(s) {', '.join(map(str, bad))} spend an epsilon or delta that "
                                 "is not a number >= 0: the ledger was edited, and what it says was spent cannot be "
                                 "trusted; refusing to use it")
        bad = [r[0] for r in self._rows(f"SELECT id FROM releases WHERE {_BAD_ENTRY} ORDER BY id LIMIT 5")]
        if bad:
            raise LedgerUnusable(f"{self.path}: release(s) {', '.join(map(str, bad))} are not ledger entries "
                                 "(parameters not a JSON object, or a time that is no number): the ledger was "
                                 "edited; refusing to use it")

    def remaining(self, dataset: str) -> tuple[float, float]:
        b = self.budget(dataset)
        if b is None:
            raise NoBudget(f"dataset {dataset!r} has no privacy budget: set one with "
                           f"`mpcnet ledger budget --ledger {self.path} --dataset {dataset} --epsilon E --delta D`",
                           dataset)
        eps, dl = self.spent(dataset)
        # what float rounding leaves of an exhausted budget is 0, for refusing as for showing: one definition
        return shown_balance(b[0] - eps, b[1] - dl)

    def charge(self, dataset: str, name: str, mechanism: str, params: Mapping[str, Any], epsilon: float,
               delta: float) -> Release:
        """Record a release, or refuse it (BudgetExceeded) when it does not fit in the remaining budget."""
        return self.charge_all([(dataset, name, mechanism, params, epsilon, delta)])[0]

    def charge_all(self, charges: Sequence[tuple[str, str, str, Mapping[str, Any], float, float]],
                   default_budget: tuple[float, float] | None = None) -> list[Release]:
        """Record several releases at once (dataset, name, mechanism, params, epsilon, delta): all fit in their
        datasets' remaining budgets and are recorded, or none is (BudgetExceeded names the first that does not).
        ``default_budget``: the budget a dataset without one gets (None: such a dataset is refused)."""
        if default_budget is not None:
            default_budget = (_amount(default_budget[0], "the default budget's epsilon"),
                              _amount(default_budget[1], "the default budget's delta"))
        charges = [(dataset, name, mechanism, params, _amount(epsilon, f"the epsilon of {name!r}"),
                    _amount(delta, f"the delta of {name!r}"))
                   for dataset, name, mechanism, params, epsilon, delta in charges]
        if default_budget is not None and not (0 < default_budget[0] < math.inf and 0 <= default_budget[1] < 1):
            raise InvalidInput(f"a default budget needs a finite epsilon > 0 and 0 <= delta < 1, not {default_budget}")
        for dataset, name, _, _, epsilon, delta in charges:
            _check_dataset_name(dataset)
            if not (epsilon >= 0 and 0 <= delta < 1) or math.isinf(epsilon):
                raise InvalidInput(f"a release spends a finite epsilon >= 0 and 0 <= delta < 1, not ({epsilon}, "
                                   f"{delta}) ({name!r})")
        out: list[Release] = []
        with self._writing("charged"):  # check and insert atomically against concurrent runs
            for dataset, name, mechanism, params, epsilon, delta in charges:
                if default_budget is not None and self.budget(dataset) is None:
                    self.db.execute("INSERT INTO budgets VALUES (?, ?, ?, ?)",
                                    (dataset, default_budget[0], default_budget[1], time.time()))
                eps_left, dl_left = self.remaining(dataset)
                # (an exhausted budget -- 0 left, rounding included -- takes nothing more, however little)
                if (epsilon > eps_left + 1e-12 or delta > dl_left + 1e-15 or (epsilon > 0 and eps_left <= 0)
                        or (delta > 0 and dl_left <= 0)):
                    # the balance before this request (its earlier releases are rolled back with the refusal),
                    # and what all of its releases on this dataset spend together
                    earlier = [r for r in out if r.dataset == dataset]
                    mine = [c for c in charges if c[0] == dataset]
                    together = (f"; the {len(mine)} releases of this request spend epsilon "
                                f"{sum(c[4] for c in mine):g}, delta {sum(c[5] for c in mine):g} of it together"
                                if len(mine) > 1 else "")
                    raise BudgetExceeded(
                        f"refused: {name!r} would spend epsilon {epsilon:g}, delta {delta:g} of dataset {dataset!r}, "
                        f"which has epsilon {max(eps_left + sum(r.epsilon for r in earlier), 0):g}, delta "
                        f"{max(dl_left + sum(r.delta for r in earlier), 0):g} left{together}", dataset, name)
                at = time.time()
                cur = self.db.execute("INSERT INTO releases (dataset, name, mechanism, params, epsilon, delta, at) "
                                      "VALUES (?, ?, ?, ?, ?, ?, ?)",
                                      (dataset, name, mechanism, json.dumps(dict(params), sort_keys=True, default=str),
                                       epsilon, delta, at))
                out.append(Release(int(cur.lastrowid or 0), dataset, name, mechanism, dict(params), epsilon, delta,
                                   at, self.remaining(dataset)))
        return out

    def record_overrun(self, dataset: str, name: str, mechanism: str, params: Mapping[str, Any], epsilon: float,
                       delta: float) -> Release:
        """Record privacy that was already lost (e.g. a distributed-DP round that completed with fewer noise
        contributors than planned).  Never refused -- it happened -- so the balance may go below zero.  A busy
        ledger is waited for longer than for a charge (OVERRUN_ATTEMPTS busy timeouts): this spending cannot be
        declined, only delayed."""
        epsilon, delta = _amount(epsilon, f"the epsilon of {name!r}"), _amount(delta, f"the delta of {name!r}")
        if not (epsilon >= 0 and delta >= 0) or math.isinf(epsilon):
            raise InvalidInput(f"an overrun spends a finite epsilon >= 0 and a delta >= 0, not ({epsilon}, {delta}) "
                               f"({name!r})")
        _check_dataset_name(dataset)
        at = time.time()
        for attempt in range(1, OVERRUN_ATTEMPTS + 1):
            try:
                with self._writing("recorded"):
                    cur = self.db.execute("INSERT INTO releases (dataset, name, mechanism, params, epsilon, delta, "
                                          "at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                          (dataset, name, mechanism,
                                           json.dumps(dict(params), sort_keys=True, default=str), epsilon,
                                           min(delta, 0.999999), at))
                return Release(int(cur.lastrowid or 0), dataset, name, mechanism, dict(params), epsilon, delta, at)
            except LedgerBusy:
                if attempt == OVERRUN_ATTEMPTS:
                    raise LedgerBusy(f"the epsilon ledger {self.path} stayed busy for "
                                     f"{OVERRUN_ATTEMPTS * self.busy_timeout_s:g} s: the overrun {name!r} of dataset "
                                     f"{dataset!r} (epsilon {epsilon:g}, already spent) is NOT recorded; record it "
                                     "once the ledger is free") from None
        raise AssertionError("unreachable")

    def releases(self, dataset: str | None = None) -> list[Release]:
        q = "SELECT id, dataset, name, mechanism, params, epsilon, delta, at FROM releases"
        self._check_rows()
        rows = self._rows(q + (" WHERE dataset = ? ORDER BY id" if dataset else " ORDER BY id"),
                          (dataset,) if dataset else ())
        out = []
        for r in rows:
            try:
                params = json.loads(r[4])
                if not isinstance(params, dict):
                    raise TypeError
                out.append(Release(r[0], r[1], r[2], r[3], params, float(r[5]), float(r[6]), float(r[7])))
            except (TypeError, ValueError, RecursionError):
                raise LedgerUnusable(f"{self.path}: release {r[0]} is not a ledger entry (parameters not a JSON "
                                     "object, or a time that is no number): the ledger was edited") from None
        return out

    def datasets(self) -> list[str]:
        return [r[0] for r in self._rows("SELECT dataset FROM budgets UNION SELECT dataset FROM releases ORDER BY 1")]


__all__ = ["BudgetExceeded", "EpsilonLedger", "LedgerBusy", "LedgerUnusable", "Release", "check_chosen_location",
           "default_path", "read_only_snapshot_uri", "shown_balance"]
