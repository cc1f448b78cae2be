"""from_rpc_error: gRPC's transport texts (as grpcio 1.7x words them, captured on loopback) become errors that
say what a person should check -- and a peer's relayed diagnosis is not diagnosed a second time."""

from __future__ import annotations

import grpc
import pytest

from mpcnet.errors import PeerTimeout, PeerUnavailable
from mpcnet.transport.rpc import from_rpc_error


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


PREFIX = "failed to connect to all addresses; last error: "
CASES = [
    # a certificate from another CA: a TLS problem, say which files to check
    (PREFIX + "UNKNOWN: ipv4:127.0.0.1:39495: Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: "
     "error:1a000064:ECDSA routines:OPENSSL_internal:BAD_SIGNATURE: certificate signature failure: OK",
     "TLS handshake failed"),
    (PREFIX + "UNKNOWN: ipv4:127.0.0.1:34157: Custom verification check failed with error: UNAUTHENTICATED: "
     "Hostname Verification Check failed.", "identity expected"),
    # the server refused this caller's certificate (or a plaintext caller)
    (PREFIX + "UNAVAILABLE: ipv4:127.0.0.1:39495: Socket closed", "closed the connection during set-up"),
    # the peer died (or is not a TLS server) while the handshake was under way: not a certificate problem
    (PREFIX + "UNAVAILABLE: ipv4:127.0.0.1:40519: Handshake read failed (Socket closed)", "may be down or restarting"),
    (PREFIX + "UNAVAILABLE: ipv4:127.0.0.1:37453: Handshake read failed (recvmsg:Connection reset by peer (104))",
     "may be down or restarting"),
    (PREFIX + "UNKNOWN: ipv4:127.0.0.1:55731: Failed to connect to remote host: Connection refused", "is unreachable"),
]


@pytest.mark.parametrize("details,says", CASES)
def test_transport_failures_name_the_peer_and_the_likely_cause(details: str, says: str) -> None:
    err = from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, details), "node 2 (prepare stage)")
    assert isinstance(err, PeerUnavailable) and str(err).startswith("node 2 (prepare stage)") and says in str(err)


def test_a_dying_peer_reads_as_down_first_and_certificates_second() -> None:
    err = str(from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, CASES[3][0]), "node 2"))
    assert err.index("down or restarting") < err.index("certificate")
    # a certificate complaint in any case is a TLS problem, whatever else the text says
    alert = PREFIX + "UNAVAILABLE: ipv4:127.0.0.1:1: Handshake read failed (SSLV3_ALERT_BAD_CERTIFICATE)"
    assert "TLS handshake failed" in str(from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, alert), "node 2"))


def test_a_relayed_diagnosis_is_passed_on_once_not_nested() -> None:
    inner = from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, CASES[0][0]), "node 2 (prepare stage)")
    outer = from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, str(inner)), "coordinator (job 'j')")
    assert str(outer) == f"coordinator (job 'j'): {inner}"
    assert str(outer).count("TLS handshake failed") == 1 and str(outer).count("check that both") == 1


def test_a_deadline_names_the_peer() -> None:
    err = from_rpc_error(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), "node 3")
    assert isinstance(err, PeerTimeout) and "node 3 did not answer within the deadline" in str(err)
