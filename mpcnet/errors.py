"""Errors a person can act on, each mapped to one gRPC status code.

Grpc-free on purpose: the core and SDK raise these; the transport maps
``status`` to ``grpc.StatusCode`` when aborting an RPC, and the SDK maps a
received status back to the same class.  Messages name the job, secret,
peer and stage where relevant, and never contain secret values.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


class MpcnetError(Exception):
    status = "INTERNAL"


class InvalidInput(MpcnetError):
    status = "INVALID_ARGUMENT"


class NotFound(MpcnetError):
    status = "NOT_FOUND"


class AlreadyExists(MpcnetError):
    status = "ALREADY_EXISTS"


class PermissionDenied(MpcnetError):
    status = "PERMISSION_DENIED"


class Unauthenticated(MpcnetError):
    status = "UNAUTHENTICATED"


class FailedPrecondition(MpcnetError):
    status = "FAILED_PRECONDITION"


class ResourceExhausted(MpcnetError):
    status = "RESOURCE_EXHAUSTED"


class PeerTimeout(MpcnetError):
    """A peer did not answer within the stage deadline."""

    status = "DEADLINE_EXCEEDED"


class PeerUnavailable(MpcnetError):
    status = "UNAVAILABLE"


class Aborted(MpcnetError):
    status = "ABORTED"


BY_STATUS: dict[str, type[MpcnetError]] = {
    cls.status: cls
    for cls in (InvalidInput, NotFound, AlreadyExists, PermissionDenied, Unauthenticated,
                FailedPrecondition, ResourceExhausted, PeerTimeout, PeerUnavailable, Aborted)
}


def is_whole(value: object) -> bool:
    """An integer (Python or numpy), not a bool: True would pass for 1, and 2.5, NaN or inf for a count."""
    import numbers
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def make_output_dir(flag: str, path: "str | os.PathLike[str]") -> "Path":
    """The results directory a command writes into, made before any work (a benchmark's numbers would be lost
    at the end): a path that is a file, or cannot be made, is refused naming ``flag``."""
    from pathlib import Path
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"{flag} {out}: cannot make that directory ({exc.strerror or exc})") from None
    return out


def check_output_file(flag: str, path: str) -> None:
    """Refuse, before any work, an output file a command could not write at the end: a directory, a file in a
    directory that does not exist, or one the file system will not let this process write (the work would be
    done -- and privacy budget spent -- then lost).  Probed by opening it for appending, which leaves an existing
    file as it was; a file the probe made is removed again."""
    from pathlib import Path
    out = Path(path)
    if out.is_dir():
        raise InvalidInput(f"{flag} {path} is a directory, not a file")
    if not out.parent.is_dir():
        raise InvalidInput(f"{flag} {path}: the directory {out.parent} does not exist")
    existed = out.exists()
    if existed and out.is_file():
        try:
            with open(out, "rb") as probe:
                database = probe.read(16) == b"SQLite format 3\x00"
        except OSError:
            database = False  # unreadable: the write probe below says why
        if database:  # an epsilon ledger, a journal: its history would be replaced by this command's output
            raise InvalidInput(f"{flag} {path} is an SQLite database (an epsilon ledger or a journal?): this "
                               "command would overwrite it; choose another file")
    try:
        with open(out, "a"):
            pass
    except OSError as exc:
        raise InvalidInput(f"{flag} {path} cannot be written: {exc.strerror or exc}") from None
    if not existed:
        out.unlink(missing_ok=True)
