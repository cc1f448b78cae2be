"""Privacy receipts: who saw what, for a released MPC result or FedAvg model."""

from __future__ import annotations

from typing import Any, Mapping

from mpcnet.core.program import IrCode, Plan, SecretType


def job_receipt(job_id: str, plan: Plan, inputs: Mapping[str, tuple[SecretType, str]], n_nodes: int,
                privacy: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """``privacy``: the coordinator's record of the plan's DP releases (epsilon spent, datasets, balances)."""
    beaver = sum(1 for i in plan.instrs if i.code is IrCode.BEAVER)
    trunc = sum(1 for i in plan.instrs if i.code is IrCode.TRUNC)
    layers = ["additive secret sharing over Z_2^64 among %d compute nodes" % n_nodes]
    if plan.releases:
        covered = [k for k in plan.outputs if k not in plan.exact_outputs]
        exact = [k for k in plan.outputs if k in plan.exact_outputs]
        layers.append(f"differential privacy on output(s) {', '.join(covered) or '(none)'}: discrete Laplace noise "
                      f"added inside the secret sharing, one noise share from each of the {n_nodes} compute nodes"
                      + (f"; output(s) {', '.join(exact)} are exact, not covered" if exact else ""))
    return {
        "job_id": job_id,
        "layers": layers,
        "trust_assumptions": "semi-honest, non-colluding compute nodes (any %d of %d learn nothing); "
                             "trusted dealer (sees triples, never inputs) that colludes with no node: it knows "
                             "every Beaver and truncation mask, so with one node's view it would see every opened "
                             "masked value in the clear" % (n_nodes - 1, n_nodes),
        "inputs": [{"name": k, "owner": o, "seen_in_clear_by": [o],
                    "each_node_holds": "one uniformly random additive share",
                    "public": f"shape {list(t.shape)}, {'integer' if t.frac_bits == 0 else 'fixed point'}, "
                              f"declared bound {'0 <= x' if t.nonnegative else '|x|'} <= {t.bound:g}"
                              + (", DP-only (released only with noise)" if t.dp_only else "")}
                   for k, (t, o) in inputs.items()],
        "opened_to_nodes": (
            [f"{beaver} Beaver mask pair(s) d=x-a, e=y-b (uniformly random)"] if beaver else []
        ) + ([f"{trunc} truncation mask(s) x+r (uniformly random)"] if trunc else [])
        + list(plan.opened_to_nodes),
        "outputs": [{"name": k, "revealed_to": list(v)} for k, v in plan.outputs.items()],
        "coordinator_saw": "program, input names, shapes and owners, timings; no values",
        "dealer_saw": "material shapes and its own random triples; no inputs or outputs",
        "differential_privacy": _job_dp(plan, privacy, n_nodes),
        "multiplication_layers": plan.layers,
    }


def job_receipt_for_party(receipt: Mapping[str, Any], party: str) -> dict[str, Any]:
    """The job receipt as party ``party`` gets it: each DP release's remaining budget only for the party's own
    data (``party:<name>``).  What another owner's data has left tells what it spent in jobs this party was not
    in, so that stays with that owner and the operator (`mpcnet receipt --job`, `mpcnet ledger show`)."""
    out = dict(receipt)
    dp = receipt.get("differential_privacy")
    if isinstance(dp, Mapping) and isinstance(dp.get("releases"), list):
        own = f"party:{party}"
        releases = []
        for rel in dp["releases"]:
            rel = dict(rel)
            balances = rel.get("ledger_remaining")
            if isinstance(balances, Mapping):
                rel["ledger_remaining"] = {d: v for d, v in balances.items() if d == own}
                if len(balances) > len(rel["ledger_remaining"]):
                    rel["ledger_remaining_note"] = "other owners' balances are shown to them and the operator only"
            releases.append(rel)
        out["differential_privacy"] = {**dp, "releases": releases}
    return out


def _check_fedavg_inputs(aggregator: str, rounds: list[dict[str, Any]], dp: Any, threshold_fraction: float,
                         graph: str, small_rounds_delta: float) -> None:
    """A receipt is a claim: inputs that disagree with each other (more rounds released than the calibration
    covers, a negative delta, an unknown aggregator) are refused rather than written into one."""
    from mpcnet.errors import InvalidInput
    from mpcnet.fl.distributed_dp import DistributedDp
    from mpcnet.fl.privacy import CentralDp
    if aggregator not in ("secagg", "plain"):
        raise InvalidInput(f"aggregator {aggregator!r}: secagg or plain")
    if graph not in ("full", "sparse"):
        raise InvalidInput(f"graph {graph!r}: full (SecAgg) or sparse (SecAgg+)")
    if not 0 < threshold_fraction <= 1:
        raise InvalidInput(f"threshold_fraction {threshold_fraction!r}: in (0, 1]")
    if not 0 <= small_rounds_delta < 1:
        raise InvalidInput(f"small_rounds_delta {small_rounds_delta!r}: in [0, 1)")
    if dp is not None and not isinstance(dp, (CentralDp, DistributedDp)):
        raise InvalidInput("dp must be a CentralDp, a DistributedDp or None")
    needed = {"round", "sampled", "included", "dropped", "skipped"} | (
        {"noise_contributors"} if isinstance(dp, DistributedDp) else set())
    for r in rounds:
        if not isinstance(r, dict) or not needed <= set(r):
            got = sorted(r) if isinstance(r, dict) else repr(r)
            raise InvalidInput(f"each round needs the keys {sorted(needed)}; got {got}")
    released = sum(1 for r in rounds if not r["skipped"])
    if dp is not None and released > dp.rounds:
        raise InvalidInput(f"{released} rounds released, the DP calibration covers {dp.rounds}: its epsilon would "
                           "not hold")


def fedavg_receipt(run: str, aggregator: str, rounds: list[dict[str, Any]], clients: int, dp: Any,
                   ledger: Mapping[str, Any] | None, threshold_fraction: float = 2 / 3,
                   graph: str = "full", weight_cap: int = 0, small_rounds_delta: float = 0.0) -> dict[str, Any]:
    """Which layers protected a released FedAvg model, who took part, what it cost in epsilon, whom it trusts.

    ``rounds``: per round {"round", "sampled", "included", "dropped", "skipped"[, "noise_contributors"]};
    ``dp``: a :class:`mpcnet.fl.privacy.CentralDp`, a :class:`mpcnet.fl.distributed_dp.DistributedDp` or None;
    ``ledger``: {"dataset", "spent", "remaining"} or None; ``graph``: SecAgg's, "full" or "sparse" (SecAgg+).
    Through SecAgg each round's entry also gives its Shamir threshold (and on SecAgg+ each client's number of
    neighbours), as the aggregator chose them for the round's sample.  ``weight_cap``: the run's public DP
    weight cap (0: every client weighted 1).  ``small_rounds_delta``: central DP's addition to delta for rounds
    too small to aggregate (:func:`mpcnet.fl.fedavg.skipped_rounds_delta`), included in the delta given.

    Under central DP with a sampling rate below 1 each round is given only as released or skipped
    (:func:`public_rounds`): the epsilon is amplified by sampling, which holds only against a reader who cannot
    tell who or how many were sampled."""
    from mpcnet.fl.distributed_dp import DistributedDp
    from mpcnet.fl.fedavg import secagg_threshold
    from mpcnet.fl.privacy import epsilon_against_clients
    from mpcnet.secagg.graph import default_degree
    _check_fedavg_inputs(aggregator, rounds, dp, threshold_fraction, graph, small_rounds_delta)
    layers = ["federated learning: each client's data stays with it; only clipped model updates leave"]
    trust = []
    shapes: dict[int, dict[str, int]] = {}  # per round: its threshold (and SecAgg+ degree)
    if aggregator == "secagg":
        for r in rounds:
            n = len(r["sampled"])
            if n >= 2:
                shapes[r["round"]] = {"threshold": secagg_threshold(n, graph, threshold_fraction)}
                if graph == "sparse":
                    shapes[r["round"]]["neighbours"] = default_degree(n)
        if graph == "sparse":
            layers.append("secure aggregation, SecAgg+ (Bell et al.): the coordinator sees masked updates and their "
                          "sum only; each client masks with and shares its keys among k random graph neighbours "
                          f"(k about 2 log2 n), threshold t = ceil({threshold_fraction:.2f} (k + 1)) within each "
                          "neighbourhood " + ("(withheld per round with the sample)" if secret_sample(dp) else
                                              "(each round's k and t are listed with it)"))
            trust.append("fewer than t of any client's k neighbours collude with the coordinator (semi-honest "
                         "coordinator); the graph is random and fixed before the clients' keys are known; "
                         + SURVIVORS_CONNECTED)
        else:
            layers.append("secure aggregation (Bonawitz et al.): the coordinator sees masked updates and their sum "
                          f"only; each round needs a threshold t = ceil({threshold_fraction:.2f} n) of its n clients "
                          + ("(withheld per round with the sample)" if secret_sample(dp) else
                             "(each round's t is listed with it)"))
            trust.append("at most t - 1 clients collude with the coordinator (semi-honest coordinator)")
    else:
        layers.append("NONE for the updates: plain averaging in the clear (the insecure reference run)")
        trust.append("the aggregator sees every client's update")
    if isinstance(dp, DistributedDp):
        layers.append(f"distributed differential privacy (Skellam): every client scales its update by "
                      f"{dp.scale:.6g}, rounds it to integers with L2 norm <= {dp.l2:.6g} and adds Sk(mu/t, mu/t) "
                      f"noise before masking (mu = {dp.mu:.6g}, t = {dp.min_contributors}); any round summing t or "
                      "more clients carries at least Sk(mu, mu)")
        if aggregator == "secagg":
            trust.append("nobody sees an un-noised aggregate: the coordinator's sum already carries the noise "
                         "(distributed DP); clients are trusted to add their own noise share, and a coalition of the "
                         "coordinator with c clients can subtract only those c shares: the epsilon holds against the "
                         "coordinator alone, and against such a coalition it is that of the (t - c)/t of the noise "
                         "left, larger the larger c is; a participant knows its own share, so against one client "
                         "reading the model it is the c = 1 case (a little above the epsilon when a round sums "
                         "exactly t clients)")
        else:
            trust.append(f"without SecAgg the aggregator sees each client's update with only its own 1/"
                         f"{dp.min_contributors} share of the noise: the epsilon above holds for the released model "
                         "only, not against the aggregator")
        applied = [r for r in rounds if not r.get("skipped")]
        contributors = [int(r.get("noise_contributors", 0)) for r in applied]
        short = [r["round"] for r in applied if int(r.get("noise_contributors", 0)) < dp.min_contributors]
        realised = dp.realised_epsilon(contributors) if contributors else 0.0
        privacy: dict[str, Any] = {"mechanism": "skellam (distributed)", "unit": "one client (user-level); neighbouring runs "
                   "replace one client's update with zeros (zero-out adjacency); no amplification by sampling; "
                   + _public_weights(weight_cap),
                   # spent: the calibration's, or more when rounds summed fewer than t clients' noise
                   "epsilon": max(dp.epsilon, realised), "planned_epsilon": dp.epsilon, "delta": dp.delta,
                   "rounds": dp.rounds, "noise_multiplier": dp.noise_multiplier, "realised_epsilon": realised,
                   "rounds_short_of_noise": short,
                   "accountant": "dp-accounting RDP at integer orders, the Skellam bound (Agarwal et al. 2021) "
                                 "as zCDP events"}
        if short and realised > dp.epsilon:
            privacy["shortfall"] = (f"rounds {short} summed fewer than t = {dp.min_contributors} clients' noise: "
                                    f"the run spent epsilon {realised:.4g}, not {dp.epsilon:g}")
    elif dp is not None and dp.noise_multiplier > 0:
        layers.append(f"central differential privacy: Gaussian noise multiplier {dp.noise_multiplier:.4g} on the sum "
                      f"of updates clipped to L2 norm {dp.clip:g}, Poisson sampling rate {dp.sampling_rate:g}")
        trust.append("the FedAvg server adds the noise after SecAgg has summed: it sees the un-noised aggregate "
                     "(central DP, a trusted noise-adder)" if aggregator == "secagg" else
                     "the FedAvg server adds the noise to the sum it computed in the clear: it sees every update "
                     "and the un-noised aggregate (central DP, a trusted noise-adder)")
        against_clients = epsilon_against_clients(dp, small_rounds_delta) if aggregator == "secagg" else None
        if aggregator == "secagg":
            trust.append("the epsilon holds against readers of the released model; each round's clients learn who "
                         "else was sampled (not the round's sum: the coordinator gives it to the FedAvg server "
                         "only), " + (_clients_epsilon(against_clients) if against_clients else
                                      "which costs nothing at a sampling rate of 1, ")
                         + "and, where the SecAgg coordinator is not the trusted server itself, the coordinator "
                         "sees each round's un-noised sum: central DP trusts it like the server")
        privacy = {"mechanism": "gaussian (central)", "unit": "one client (user-level); neighbouring runs replace one "
                   "client's update with zeros (zero-out adjacency); " + _public_weights(weight_cap),
                   "epsilon": dp.epsilon, "delta": dp.delta + small_rounds_delta, "rounds": dp.rounds,
                   "delta_small_rounds": small_rounds_delta,
                   "accountant": "dp-accounting RDP, Poisson-sampled Gaussian (zero-out adjacency); plus "
                                 "(1 + e^epsilon) P(a round too small to aggregate) in delta"}
        if against_clients:
            privacy["epsilon_against_clients"] = against_clients
        skipped = [r["round"] for r in rounds if r.get("skipped")]
        if skipped:
            privacy["skipped_rounds"] = (f"rounds {skipped} were skipped; the accounting covers skips at the "
                                         "planned dropout rate only (delta_small_rounds): one caused by a client "
                                         "failing is outside it")
    else:
        # epsilon is unbounded: JSON null, since JSON has no infinity (Python's "Infinity" breaks strict parsers)
        privacy = {"mechanism": "none", "epsilon": None,
                   "note": "the released model is not differentially private (epsilon unbounded): it can leak "
                           "about a client's data"}
    if ledger:
        privacy["ledger"] = dict(ledger)
    keep = ("round", *MEMBER_LISTS, "skipped", "noise_contributors")
    participants: dict[str, Any] = {"clients": clients, "rounds": public_rounds(rounds, dp) if secret_sample(dp) else
                                    [{**{k: v for k, v in r.items() if k in keep}, **shapes.get(r["round"], {})}
                                     for r in rounds]}
    if secret_sample(dp):
        participants["withheld"] = ("each round's sampled, included and dropped clients, their numbers and the "
                                    "round's threshold: the epsilon counts on amplification by Poisson sampling, "
                                    "which holds only against a reader who cannot tell who or how many were "
                                    "sampled (the FedAvg server knows)")
    return {
        "run": run,
        "released": "the final global model",
        "layers": layers,
        "differential_privacy": privacy,
        "participants": participants,
        "trust_assumptions": trust,
    }


MEMBER_LISTS = ("sampled", "included", "dropped")
# what keeps a SecAgg+ round's partial sums hidden besides the threshold (mpcnet.secagg.stage.check_survivors)
SURVIVORS_CONNECTED = ("a round is unmasked only when its survivors are connected in the graph (else it aborts: "
                       "groups no pairwise mask joins would be unmasked one by one); that rule counts dropouts "
                       "only, and against colluding clients (one can be the only link between two groups) the "
                       "guarantee holds with high probability over the random graph at about 2 log2 n "
                       "neighbours (Bell et al.; the default degree)")


def _clients_epsilon(against: dict[str, Any]) -> str:
    """What a central-DP run's participants can learn, in words (mpcnet.fl.privacy.epsilon_against_clients)."""
    if "not_computed" in against:
        return f"so against them the epsilon is larger (not computed: {against['not_computed']}), "
    one, pooled = against["one_client"], against["all_other_clients"]
    return ("so against them the amplification by sampling partly fails: epsilon "
            f"{one['epsilon']:.4g} (delta {one['delta']:.3g}) against one client, {pooled['epsilon']:.4g} (delta "
            f"{pooled['delta']:.3g}) against all the other clients pooling what they saw (the ledger charges the "
            "epsilon against readers of the model), ")


def secret_sample(dp: Any) -> bool:
    """Whether a FedAvg run's DP counts on amplification by sampling (central DP at a sampling rate below 1): its
    rounds' members must then not be published."""
    from mpcnet.fl.distributed_dp import DistributedDp
    return (dp is not None and not isinstance(dp, DistributedDp) and dp.noise_multiplier > 0
            and dp.sampling_rate < 1)


def public_rounds(rounds: list[dict[str, Any]], dp: Any) -> list[dict[str, Any]]:
    """Per-round outcomes as they may leave with the model.  When the sample is secret, only whether each round
    was skipped: its members, their number, its threshold (a function of the number), its time and a skip's
    reason would each tell something of who or how many were sampled, and the accountant assumes neither is
    known."""
    if not secret_sample(dp):
        return rounds
    return [{"round": r["round"], "skipped": "skipped" if r.get("skipped") else ""} for r in rounds]


def _public_weights(weight_cap: int) -> str:
    """What a DP FedAvg run's weighting makes public (its denominator is a public constant)."""
    if weight_cap:
        return (f"each client's update is weighted min(n_k / {weight_cap}, 1) with the public cap {weight_cap}; the "
                "number of clients is treated as public, their data sizes not")
    return "every client's update has weight 1: the number of clients is treated as public, their data sizes not"


def _job_dp(plan: Plan, privacy: list[dict[str, Any]] | None, n_nodes: int) -> Any:
    if not plan.releases:
        return "none (exact result)"
    exact = [k for k in plan.outputs if k in plan.exact_outputs]
    return {
        "mechanism": f"discrete Laplace, added inside the secret sharing: each of the {n_nodes} nodes adds one "
                     "share (a difference of negative binomials); only all nodes together know the noise",
        "unit": "one row (individual) of the input; row counts are public, so neighbours replace one row",
        "guarantee": "pure epsilon-DP (delta = 0), accounted with dp-accounting's PLD accountant",
        "limits": "assumes every node adds its share honestly and none colludes with a reader: a node working "
                  "with a reader can subtract its own share (the rest carry (N-1)/N of the noise variance, not "
                  "the promised epsilon); the dealer with one node sees the sum before the noise (it knows the "
                  "truncation mask) -- the same non-collusion the secret sharing already assumes; the input "
                  "bounds that set the sensitivity are checked by the owner's SDK, not enforced inside MPC (an "
                  "owner who shares values outside them weakens only its own data's protection); the coordinator "
                  "alone keeps the ledger (nodes recompute the noise, they do not check the charge); and the "
                  "noise's tails are cut at about 60 scales by the sampler's floating-point uniforms, a change of "
                  "probability below e^-58",
        "releases": privacy or [],
        "exact_outputs": exact,
        "note": ("these outputs are exact and not covered by DP: " + ", ".join(exact)) if exact else
                "every output is a DP release, or computed from DP releases and public values only "
                "(post-processing: covered by the releases' epsilon)",
    }


def secagg_receipt(round_id: str, params: Any, state: str, done: Any = None, aborted: Any = None) -> dict[str, Any]:
    """The receipt of one SecAgg round, from its parameters (SecAggRoundParams) and outcome (SecAggDone or
    SecAggAborted) -- all the coordinator keeps in its journal, so a receipt can be rebuilt after a restart."""
    sparse = int(getattr(params, "graph", 0)) == 2  # SECAGG_GRAPH_SECAGGPLUS
    n, t = len(params.client_ids), int(params.threshold)
    if sparse:
        from mpcnet.secagg.graph import default_degree
        k = int(params.degree) or default_degree(n)
        layer = (f"secure aggregation, SecAgg+ (Bell et al.): each of the {n} clients masks with and shares its "
                 f"keys among its {k} graph neighbours; threshold t = {t} of the {k + 1} in each closed "
                 "neighbourhood")
        trust = (f"semi-honest coordinator; fewer than t = {t} of any client's neighbours collude with it; the "
                 "graph is random and fixed before the clients' keys are known; " + SURVIVORS_CONNECTED)
    else:
        layer = (f"secure aggregation (Bonawitz et al.): pairwise masks between all {n} clients plus a self mask; "
                 f"Shamir threshold t = {t} of {n}")
        trust = f"semi-honest coordinator; at most t - 1 = {t - 1} clients collude with it"
    out: dict[str, Any] = {
        "round": round_id,
        "released": "the sum of the included clients' vectors (mod 2^%d), to the round's operator%s" % (
            params.bits, " only (the clients learn who was included, not the sum)"
            if getattr(params, "sum_to_operator_only", False)
            else " and to any registered client of the round that asks, dropped ones included"),
        "layers": [layer],
        "participants": {"registered": list(params.client_ids)},
        "coordinator_saw": "masked vectors, the key advertisements, encrypted shares it relays, the Shamir shares "
                           "it needs to unmask, and the sum; no client's vector",
        "differential_privacy": "none at the round level: the sum is exact (FedAvg's distributed DP adds Skellam "
                                "noise before masking; its model receipt accounts for it)",
        "trust_assumptions": [trust, "each client's vector is exact in the sum: SecAgg hides who sent what, not "
                                     "what the sum says"],
        "state": state,
    }
    if done is not None and state == "done":
        out["participants"]["included"] = sorted(done.included)
        out["participants"]["dropped"] = [{"client": d.client_id, "stage": d.stage} for d in done.dropped]
    elif aborted is not None and state == "aborted":
        out["released"] = "nothing: the round aborted"
        out["aborted"] = {"stage": aborted.stage, "reason": aborted.reason}
        # unrecorded (an older journal, or a round a restart cut short): no "dropped" key, never an empty list
        if getattr(aborted, "participants_recorded", False):
            out["participants"]["dropped"] = [{"client": d.client_id, "stage": d.stage} for d in aborted.dropped]
            out["participants"]["sent_masked_input"] = sorted(aborted.masked_input_from)
    return out
