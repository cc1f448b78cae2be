"""Mutual TLS between roles: credentials from a certificate directory, expected peer names, caller checks.

* Every server asks for a client certificate from the cluster CA
  (``require_client_auth``); a caller without one, with one from another
  CA, or with an expired one fails the TLS handshake.
* Every channel sets the TLS target name to the identity it expects
  (``2.node.mpcnet`` for node 2, see :mod:`mpcnet.certs`): a peer that
  presents another role's or another node's certificate fails the handshake
  on the dialling side.
* :class:`PeerIdentityInterceptor` reads the caller's identity from its
  certificate and refuses (PERMISSION_DENIED) an internal method called by a
  role that has no business calling it, and a node whose ``mpcnet-node-id``
  metadata names another node than its certificate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from mpcnet.certs import CertError, Identity
from mpcnet.transport.handlers import NO_FINISH, Finish, WrappingInterceptor, wrap_handler

log = logging.getLogger("mpcnet.tls")

NODE_ID_KEY = "mpcnet-node-id"
# Which roles may call each internal method (every other method: any certificate from the cluster CA).
METHOD_ROLES: dict[str, frozenset[str]] = {
    "/mpcnet.v1.Node/Exchange": frozenset({"node"}),
    "/mpcnet.v1.Dealer/Enroll": frozenset({"node"}),
    "/mpcnet.v1.Dealer/FetchCorrections": frozenset({"node"}),
    "/mpcnet.v1.Dealer/CreateBatch": frozenset({"coordinator"}),
    "/mpcnet.v1.SecAgg/CreateRound": frozenset({"coordinator"}),
    **{f"/mpcnet.v1.Node/{m}": frozenset({"coordinator"})
       for m in ("OpenJob", "DeclareInput", "Prepare", "Execute", "AbortJob", "EnsureEnrolled")},
}


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """This process's identity and the PEM bytes it needs (``ca.crt`` and its own pair)."""

    identity: Identity
    ca: bytes = field(repr=False)
    cert: bytes = field(repr=False)
    key: bytes = field(repr=False)

    @staticmethod
    def load(directory: str | Path, role: str, name: str) -> "TlsFiles":
        ident = Identity(role, name)
        d = Path(directory)
        paths = (d / "ca.crt", d / f"{ident.stem}.crt", d / f"{ident.stem}.key")
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise CertError(f"TLS for {ident}: missing {', '.join(missing)} (make them with `mpcnet certs init` "
                            f"and `mpcnet certs issue {role} {name}`)")
        ca, cert, key = (p.read_bytes() for p in paths)
        return TlsFiles(ident, ca, cert, key)

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca,
                                           require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.ca, private_key=self.key,
                                            certificate_chain=self.cert)


def target_options(expected: Identity) -> list[tuple[str, Any]]:
    """Channel options that make the handshake accept only ``expected``'s certificate."""
    return [("grpc.ssl_target_name_override", expected.dns), ("grpc.default_authority", expected.dns)]


class _Ambiguous:
    """A certificate carrying more than one mpcnet identity: refused (``mpcnet certs issue`` never makes one)."""


def peer_identity(context: grpc.aio.ServicerContext) -> Identity | _Ambiguous | None:
    """The caller's mpcnet identity from its verified certificate (None on a plaintext call)."""
    auth = context.auth_context() or {}
    found = {i for i in (Identity.from_dns(raw.decode(errors="replace"))
                         for raw in auth.get("x509_subject_alternative_name", [])) if i is not None}
    if len(found) > 1:
        return _Ambiguous()
    return next(iter(found), None)


def refusal(method: str, ident: Identity | _Ambiguous | None, metadata: dict[str, list[str]]) -> str | None:
    """Why ``ident`` may not call ``method`` (None: allowed).  ``metadata``: every value of each key."""
    if ident is None:
        return f"{method} needs a client certificate with an mpcnet identity (from `mpcnet certs issue`)"
    if isinstance(ident, _Ambiguous):
        return f"{method}: the caller's certificate names more than one mpcnet identity"
    roles = METHOD_ROLES.get(method)
    if roles is not None and ident.role not in roles:
        return f"{method} is for {'/'.join(sorted(roles))} only; the caller's certificate is {ident}"
    claims = metadata.get(NODE_ID_KEY, [])
    if len(claims) > 1:  # the servicer reads the first value: one claim only, or a node could speak for another
        return f"the call carries {NODE_ID_KEY} {len(claims)} times"
    if claims and (ident.role != "node" or ident.name != claims[0]):
        return f"the call claims to come from node {claims[0]} but its certificate is {ident}"
    return None


class PeerIdentityInterceptor(WrappingInterceptor):
    """Check the caller's certificate identity against :data:`METHOD_ROLES` before the handler runs."""

    def wrap(self, method: str, handler: Any) -> Any:
        async def check(context: grpc.aio.ServicerContext) -> Finish:
            md: dict[str, list[str]] = {}
            for k, v in context.invocation_metadata() or ():
                md.setdefault(k.lower(), []).append(v if isinstance(v, str) else "<binary>")
            why = refusal(method, peer_identity(context), md)
            if why is not None:
                log.warning("refused %s: %s", method, why)
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, why)
            return NO_FINISH

        return wrap_handler(handler, check)
