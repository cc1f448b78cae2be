"""Secure aggregation (Bonawitz et al., CCS 2017) and SecAgg+ (Bell et al., CCS 2020), pure core.

One module per round -- :mod:`~mpcnet.secagg.advertise_keys`,
:mod:`~mpcnet.secagg.share_keys`, :mod:`~mpcnet.secagg.masked_input`,
:mod:`~mpcnet.secagg.consistency_check`, :mod:`~mpcnet.secagg.unmasking` --
each with ``server_request`` (server -> clients), ``client_step`` (one
client's answer) and ``server_step`` (collect answers, shrink the survivor
set, check the threshold) over frozen, canonically encodable messages
(:mod:`~mpcnet.secagg.encoding`).  :func:`~mpcnet.secagg.driver.run_round`
runs a whole round in process.  No networking, no asyncio.

Survivor sets: U1 (advertised keys) >= U2 (shared keys) >= U3 (sent masked
input) >= U4 (signed U3; active mode) >= U5 (sent unmasking shares).  The
sum released is that of the inputs of U3.
"""

from mpcnet.secagg.driver import TranscriptEntry, run_round, signing_keys_for, verify_keys_for
from mpcnet.secagg.errors import (ConsistencyRefused, DecryptionFailed, DisconnectedSurvivors,
                                  DisconnectedSurvivorsRefused, DoubleRevealRefused, IllegalTransition,
                                  InconsistentShares, InsufficientSurvivors, InvalidSignatureRefused,
                                  OutsideViewRefused, ParamsError, ProtocolViolation, RefusedRequest, SecAggError,
                                  TooFewSurvivorsRefused)
from mpcnet.secagg.graph import GraphKind, NeighbourGraph
from mpcnet.secagg.params import SecAggParams
from mpcnet.secagg.stage import Stage

__all__ = [
    "ConsistencyRefused", "DecryptionFailed", "DisconnectedSurvivors", "DisconnectedSurvivorsRefused",
    "DoubleRevealRefused", "GraphKind", "IllegalTransition",
    "InconsistentShares", "InsufficientSurvivors", "InvalidSignatureRefused", "NeighbourGraph", "OutsideViewRefused",
    "ParamsError", "ProtocolViolation", "RefusedRequest", "SecAggError", "SecAggParams", "Stage",
    "TooFewSurvivorsRefused", "TranscriptEntry", "run_round", "signing_keys_for", "verify_keys_for",
]
