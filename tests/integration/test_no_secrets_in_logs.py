"""No secret value appears in any log line, error message or exception text.

Runs a workload with distinctive input values on the DEBUG-logging session
cluster, provokes error paths, then searches every process log and every
error text for the values in decimal and in their ring encodings.
"""

from __future__ import annotations

import numpy as np
import pytest

import mpcnet
from mpcnet.cluster import LocalCluster
from mpcnet.core import fixedpoint
from mpcnet.errors import MpcnetError
from tests.conftest import unique

pytestmark = pytest.mark.integration

SECRETS_F = np.array([123456.789, -98765.4321, 31415.9265])
SECRETS_I = np.array([987654321987, -123123123123, 555444333222])


def needles() -> list[str]:
    out = []
    for v in SECRETS_F:
        out += [f"{v}", f"{v:.3f}", str(int(fixedpoint.encode(np.array([v]))[0])),
                str(int(fixedpoint.encode(np.array([v])).view(np.int64)[0]))]
    for v in SECRETS_I:
        out += [str(v), str(int(np.array([v]).view(np.uint64)[0])), hex(int(v) & (2**64 - 1))[2:]]
    return out


def test_no_secret_in_logs_or_errors(cluster: LocalCluster) -> None:
    bob = mpcnet.connect(cluster.coordinator, unique("bob"))
    alice = mpcnet.connect(cluster.coordinator, unique("alice"))
    job = alice.create_job(parties=[bob.name])
    alice.share(job, "f", SECRETS_F)
    bob.share(job, "i", SECRETS_I)
    alice.share(job, "g", SECRETS_F[::-1].copy())
    res = alice.run(job, mpcnet.Program().add("p", "f", "g").add("s", "i", "i").mean("t", "f")
                    .output("p", to=[alice.name]).output("s", to=[alice.name]).output("t", to=[alice.name]))
    assert alice.reveal(job, "s").tolist() == (2 * SECRETS_I).tolist()
    errors: list[str] = [res.receipt.__repr__()]
    for bad in (
        lambda: alice.share(job, "f", SECRETS_F),                      # duplicate name
        lambda: alice.share(job, "huge", SECRETS_F * 1e12),            # out of range
        lambda: bob.reveal(job, "p"),                                   # not a reader
        lambda: alice.run(job, mpcnet.Program().mul("q", "f", "i").output("q", to=[alice.name])),  # job done
    ):
        with pytest.raises(MpcnetError) as err:
            bad()
        errors.append(str(err.value))
        errors.append(repr(err.value))
    text = cluster.log_text() + "\n".join(errors)
    assert "job" in text and "DEBUG" in cluster.log_text()  # the search looks at real, verbose logs
    leaked = [n for n in needles() if n in text]
    assert not leaked, f"secret values found in logs/errors: {leaked}"
