"""How a SecAgg Session stream ends, against an in-process coordinator service (no subprocesses): the round
ending while the server waits for the client, a client closing its side mid-round, and a client meeting a
coordinator that predates Session; and a stage request the coordinator fails to encode."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import grpc
import numpy as np
import pytest

from mpcnet.config import Config
from mpcnet.secagg_client import derive_input, run_clients, seeded_inputs
from mpcnet.secagg_wire import aggregate_of
from mpcnet.transport.metrics import RoleMetrics
from mpcnet.transport.rpc import CLIENT_TOKEN_KEY, CLUSTER_AUTH_KEY, RoleServer
from mpcnet.v1 import secagg_pb2 as spb
from mpcnet.v1 import secagg_pb2_grpc as spbg
from nodes.secagg_service import SecAggService

pytestmark = pytest.mark.integration
SECRET = "session-test-secret"
WAIT_S = 15.0  # every wait here is bounded; the server's own read limit would be 31 s and more


class NoSessionService(SecAggService):
    """A coordinator from before Session: the method is unknown to it."""

    async def Session(self, requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:  # noqa: N802
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        yield  # pragma: no cover - an async generator, like the real method


@contextlib.asynccontextmanager
async def coordinator(service_cls: type[SecAggService] = SecAggService
                      ) -> AsyncIterator[tuple[SecAggService, spbg.SecAggStub, str]]:
    """A SecAgg service on a loopback port of this process: (service, stub, address)."""
    metrics = RoleMetrics("coordinator")
    server = RoleServer("coordinator", "127.0.0.1:0", SECRET, None, metrics)
    service = service_cls(Config(cluster_secret=SECRET), None, metrics)
    spbg.add_SecAggServicer_to_server(service, server.server)
    address = f"127.0.0.1:{await server.start()}"
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            yield service, spbg.SecAggStub(channel), address
    finally:
        await service.close()
        await server.server.stop(0)


async def create(stub: spbg.SecAggStub, ids: list[int], t: int, join_s: float, stage_s: float = 20.0,
                 length: int = 4, operator_only: bool = False) -> tuple[str, dict[int, str]]:
    params = spb.SecAggRoundParams(client_ids=ids, threshold=t, vector_length=length, stage_deadline_s=stage_s,
                                   join_deadline_s=join_s, sum_to_operator_only=operator_only)
    reply = await stub.CreateRound(spb.SecAggCreateRoundRequest(params=params), timeout=10,
                                   metadata=((CLUSTER_AUTH_KEY, SECRET),))
    return reply.round_id, dict(reply.client_tokens)


def md(token: str) -> tuple[tuple[str, str], ...]:
    return ((CLIENT_TOKEN_KEY, token),)


def test_round_end_reaches_a_session_waiting_for_its_client() -> None:
    """Client 1 joins on a Session and stays silent; the others never join, so the round aborts at the join
    deadline (1 s).  The waiting session hears the abort then, not when its read limit (31 s) runs out."""

    async def main() -> None:
        async with coordinator() as (service, stub, address):
            rid, tokens = await create(stub, [1, 2, 3], 3, join_s=1.0)
            call = stub.Session(timeout=60, metadata=md(tokens[1]))
            await call.write(spb.SecAggNextRequest(round_id=rid, client_id=1))
            joined = await asyncio.wait_for(call.read(), WAIT_S)
            assert joined.request.stage == "advertise_keys"
            outcome = await asyncio.wait_for(call.read(), WAIT_S)
            assert outcome.WhichOneof("outcome") == "aborted"
            assert outcome.aborted.stage == "advertise_keys" and "threshold 3" in outcome.aborted.reason
            assert await asyncio.wait_for(call.code(), WAIT_S) == grpc.StatusCode.OK
            assert service.rounds[rid].attending == set()

    asyncio.run(main())


def test_closing_the_session_mid_round_is_a_dropout_with_a_status() -> None:
    async def main() -> None:
        async with coordinator() as (service, stub, address):
            rid, tokens = await create(stub, [1, 2, 3], 2, join_s=30.0)
            call = stub.Session(timeout=60, metadata=md(tokens[1]))
            await call.write(spb.SecAggNextRequest(round_id=rid, client_id=1))
            await asyncio.wait_for(call.read(), WAIT_S)
            await call.done_writing()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await asyncio.wait_for(call.read(), WAIT_S)
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "closed before the round ended" in (err.value.details() or "")
            rnd = service.rounds[rid]
            assert 1 in rnd.gone and rnd.attending == set()

    asyncio.run(main())


def test_client_falls_back_to_next_calls_on_a_coordinator_without_session() -> None:
    async def main() -> None:
        async with coordinator(NoSessionService) as (service, stub, address):
            ids = [1, 2, 3]
            rid, tokens = await create(stub, ids, 2, join_s=30.0, length=8)
            outcomes = await asyncio.wait_for(run_clients(address, rid, ids, seeded_inputs("fallback"),
                                                          tokens=tokens, want_result=True), 60)
            assert [o.state for o in outcomes] == ["done"] * 3, [o.reason for o in outcomes]
            expected = sum(derive_input("fallback", c, 8, 32) for c in ids) & np.uint64(2**32 - 1)
            assert all(np.array_equal(o.sum, expected) for o in outcomes)
            result = await stub.GetResult(spb.SecAggGetResultRequest(round_id=rid), timeout=10,
                                          metadata=((CLUSTER_AUTH_KEY, SECRET),))
            assert np.array_equal(aggregate_of(result.done), expected)

    asyncio.run(main())


def test_a_request_that_fails_to_encode_makes_its_client_a_dropout_not_a_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """A coordinator fault encoding one client's ShareKeys request: that client gets an error and is a dropout
    at once -- also with Next calls alone, where no presence stream would report it -- so the stage does not
    wait out its deadline (120 s, beyond this test's 60 s bound); the round finishes with the other three."""
    import nodes.secagg_service as service_module
    from mpcnet.secagg.share_keys import ShareKeysRequest
    real_encode = service_module.encode

    def faulty_encode(msg: object) -> bytes:
        if isinstance(msg, ShareKeysRequest) and msg.recipient == 2:
            raise RuntimeError("injected encoder fault")
        return real_encode(msg)

    monkeypatch.setattr(service_module, "encode", faulty_encode)

    async def main() -> None:
        async with coordinator() as (service, stub, address):
            ids = [1, 2, 3, 4]
            rid, tokens = await create(stub, ids, 3, join_s=30.0, stage_s=120.0, length=8)
            outcomes = await asyncio.wait_for(run_clients(address, rid, ids, seeded_inputs("encode-fault"),
                                                          tokens=tokens, want_result=True, attend=False), 60)
            by_id = {o.client_id: o for o in outcomes}
            assert by_id[2].state == "error" and "injected" not in by_id[2].reason
            assert [by_id[c].state for c in (1, 3, 4)] == ["done"] * 3, [o.reason for o in outcomes]
            expected = sum(derive_input("encode-fault", c, 8, 32) for c in (1, 3, 4)) & np.uint64(2**32 - 1)
            assert all(np.array_equal(by_id[c].sum, expected) for c in (1, 3, 4))
            assert "did not encode" in service.rounds[rid].gone[2]

    asyncio.run(main())


def test_a_session_join_refused_for_what_the_client_can_fix_leaves_it_free_to_join_again() -> None:
    """want_result on an operator-only round, or a join carrying a response: refused with a message to join
    again, and the client can (it was taken for gone when the refused Session closed, and its join refused)."""

    async def session_join(stub: spbg.SecAggStub, rid: str, cid: int, token: str, **fields: Any) -> Any:
        call = stub.Session(timeout=WAIT_S, metadata=md(token))
        await call.write(spb.SecAggNextRequest(round_id=rid, client_id=cid, **fields))
        try:
            return (await asyncio.wait_for(call.read(), WAIT_S)).request.stage
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details()
        finally:
            call.cancel()

    async def main() -> None:
        async with coordinator() as (service, stub, address):
            rid, tokens = await create(stub, [1, 2, 3], 3, join_s=5.0, operator_only=True)
            code, why = await session_join(stub, rid, 1, tokens[1], want_result=True)
            assert code == grpc.StatusCode.PERMISSION_DENIED and "join without want_result" in why
            code, why = await session_join(stub, rid, 2, tokens[2], response=b"x")
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "must not carry a response" in why
            await asyncio.sleep(0.2)
            assert not service.rounds[rid].gone  # nobody was taken for gone
            joins = [stub.Next(spb.SecAggNextRequest(round_id=rid, client_id=c), timeout=WAIT_S, metadata=md(tokens[c]))
                     for c in (1, 2, 3)]
            assert [r.request.stage for r in await asyncio.gather(*joins)] == ["advertise_keys"] * 3

    asyncio.run(main())
