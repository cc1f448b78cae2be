"""Step-by-step round set-up shared by the secagg unit tests (holds no tests itself)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from mpcnet.secagg import advertise_keys, consistency_check, masked_input, share_keys
from mpcnet.secagg.crypto import SeededRandom
from mpcnet.secagg.params import SecAggParams
from mpcnet.secagg.state import ClientState, ServerState, new_server


@dataclass
class Round:
    params: SecAggParams
    clients: dict[int, ClientState]
    server: ServerState
    inputs: dict[int, np.ndarray]


def inputs_for(params: SecAggParams) -> dict[int, np.ndarray]:
    return {c: np.full(params.vector_length, c, dtype=np.uint64) for c in params.client_ids}


def run_until_masked_input(params: SecAggParams, signing: Mapping[int, bytes] | None = None,
                           seed: bytes = b"helper-seed-0123456789abcdef0123") -> Round:
    """All clients advertise and share keys.  Returns states ready for the MaskedInputCollection request."""
    master = SeededRandom(seed)
    rng = {c: master.child(str(c).encode()) for c in params.client_ids}
    server = new_server(params)
    clients: dict[int, ClientState] = {}
    resp0 = {}
    for c, req in advertise_keys.server_request(server).items():
        key = signing[c] if signing else None
        clients[c], resp0[c] = advertise_keys.client_step(params, c, req, signing_key=key, rng=rng[c])
    server = advertise_keys.server_step(server, resp0)
    resp1 = {}
    for c, req1 in share_keys.server_request(server).items():
        clients[c], resp1[c] = share_keys.client_step(clients[c], req1, rng[c])
    server = share_keys.server_step(server, resp1)
    return Round(params, clients, server, inputs_for(params))


def run_until_unmasking(params: SecAggParams, no_masked_input: frozenset[int] = frozenset(),
                        signing: Mapping[int, bytes] | None = None, seed: bytes = b"helper-seed-0123456789abcdef0123") -> Round:
    """All clients advertise and share keys; those in ``no_masked_input`` drop before masking;
    in active mode everyone left signs.  Returns states ready for the Unmasking request."""
    rnd = run_until_masked_input(params, signing, seed)
    clients, server, inputs = rnd.clients, rnd.server, rnd.inputs
    resp2 = {}
    for c, req2 in masked_input.server_request(server).items():
        if c in no_masked_input:
            continue
        clients[c], resp2[c] = masked_input.client_step(clients[c], req2, inputs[c])
    server = masked_input.server_step(server, resp2)
    if params.active:
        resp3 = {}
        for c, req3 in consistency_check.server_request(server).items():
            clients[c], resp3[c] = consistency_check.client_step(clients[c], req3)
        server = consistency_check.server_step(server, resp3)
    return Round(params, clients, server, inputs)
