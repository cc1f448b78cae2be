"""Errors of the secure-aggregation core.

Every class maps onto one of :mod:`mpcnet.errors` (and so onto one gRPC
status).  Messages name the stage, the client ids and the counts involved;
they never contain keys, seeds, shares, masks or inputs.

* :class:`InsufficientSurvivors` -- the clean abort: fewer than ``threshold``
  survivors after a round (globally or inside one client's neighbourhood).
* :class:`IllegalTransition` -- a step called out of order.
* :class:`RefusedRequest` and subclasses -- an honest client refusing a
  server request that would break its privacy (one class per rule).
* :class:`DecryptionFailed` -- the single opaque error for every
  decryption / authentication / tamper failure of routed key shares.
* :class:`InconsistentShares` -- revealed Shamir shares that do not lie on
  one polynomial, or a reconstructed key that does not match its public key.
* :class:`ProtocolViolation` -- a structurally malformed message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mpcnet.errors import Aborted, FailedPrecondition, InvalidInput, MpcnetError, PermissionDenied, Unauthenticated

if TYPE_CHECKING:
    from mpcnet.secagg.stage import Stage


class SecAggError(MpcnetError):
    """Base class of every secure-aggregation error."""


class ParamsError(SecAggError, InvalidInput):
    """Round parameters that cannot run (bad threshold, degree, ids, ...)."""


class ProtocolViolation(SecAggError, InvalidInput):
    """A message that is malformed or addressed to the wrong round/party."""


class IllegalTransition(SecAggError, FailedPrecondition):
    """A protocol step called from a stage it may not follow."""

    def __init__(self, current: "Stage", requested: "Stage", who: str) -> None:
        self.current = current
        self.requested = requested
        super().__init__(f"{who}: illegal stage transition {current.value} -> {requested.value}")


class InsufficientSurvivors(SecAggError, Aborted):
    """Fewer than ``threshold`` parties survived ``stage``: the round aborts cleanly."""

    def __init__(self, stage: "Stage", survivors: int, threshold: int, scope: str = "round") -> None:
        self.stage = stage
        self.survivors = survivors
        self.threshold = threshold
        self.scope = scope
        super().__init__(
            f"secure aggregation aborted after {stage.value}: {survivors} survivors in {scope}, "
            f"threshold {threshold}"
        )


class DisconnectedSurvivors(InsufficientSurvivors):
    """SecAgg+: the masked-input survivors fall into groups that no pairwise mask joins.  Unmasking them would
    give the server each group's sum -- down to one client's input -- not only the total: the round aborts."""

    def __init__(self, stage: "Stage", groups: list[frozenset[int]], threshold: int) -> None:
        self.stage, self.threshold, self.scope = stage, threshold, "round"
        self.survivors = sum(len(g) for g in groups)
        self.groups = groups
        sizes = ", ".join(str(len(g)) for g in groups)
        SecAggError.__init__(self, f"secure aggregation aborted after {stage.value}: the {self.survivors} survivors "
                                   f"fall into {len(groups)} groups of sizes {sizes} that no pairwise mask joins "
                                   "(SecAgg+ graph); unmasking would reveal each group's sum, not only the total")


class RefusedRequest(SecAggError, PermissionDenied):
    """An honest client refuses a server request (base class)."""


class DoubleRevealRefused(RefusedRequest):
    """The server asked for both the self-mask share and the key share of one peer."""


class OutsideViewRefused(RefusedRequest):
    """The server named a peer outside this client's own view of the survivor sets."""


class TooFewSurvivorsRefused(RefusedRequest):
    """The server reported fewer than ``threshold`` survivors."""


class UntrustedParamsRefused(RefusedRequest):
    """Active mode: round parameters that would make the client trust the coordinator (a passive round for a
    client with a signing key, or verify keys other than the operator's)."""


class DisconnectedSurvivorsRefused(RefusedRequest):
    """SecAgg+: the survivor set the server reported splits into groups no pairwise mask joins."""


class ConsistencyRefused(RefusedRequest):
    """Active mode: fewer than ``threshold`` valid signatures on the survivor set
    this client signed, or a survivor set different from the one it signed."""


class InvalidSignatureRefused(RefusedRequest):
    """Active mode: an advertised key pair whose Ed25519 signature does not verify."""


class DecryptionFailed(SecAggError, Unauthenticated):
    """The one opaque error for any share-ciphertext failure (tag, length, ids)."""

    def __init__(self) -> None:
        super().__init__("share ciphertext failed authentication")


class InconsistentShares(SecAggError, Unauthenticated):
    """Revealed shares of one secret disagree; the round cannot finish."""
