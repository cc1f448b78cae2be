"""A cluster's certificate authority and per-role certificates (``mpcnet certs init|issue``).

No I/O beyond the files in the certificate directory and no network: the
``cryptography`` package makes an ECDSA P-256 CA and signs role
certificates with it.

Identity.  A certificate names one role and one name -- ``node 2``,
``coordinator main``, ``dealer main``, ``client alice`` -- as the DNS
subject alternative name ``<name>.<role>.mpcnet`` (plus any ``--host``
names and IP addresses the operator adds).  A process that dials a peer
sets the TLS target name to the identity it expects (``2.node.mpcnet`` for
node 2), so a certificate of another node, or of another role, fails the
handshake; a server reads the caller's identity from its certificate and
checks it against what the method allows (:mod:`mpcnet.transport.tls`).

Files in the directory: ``ca.crt`` and ``ca.key`` (keep the key offline in
production: only ``issue`` needs it), ``<role>-<name>.crt`` and
``<role>-<name>.key`` (keys written 0600).  Hand each host ``ca.crt`` and
its own pair only.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROLES = ("coordinator", "dealer", "node", "client")
DOMAIN = "mpcnet"
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
HOST_LABEL_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# every process that dials the coordinator or the dealer expects the identity "main" (one of each per cluster)
FIXED_NAMES = {"coordinator": "main", "dealer": "main"}


def check_issuable(role: str, name: str) -> None:
    """Refuse a certificate no mpcnet process would ever accept: a node's name is its id (1, 2, ...: what
    peers dial it as), the coordinator and the dealer are ``main``."""
    Identity(role, name)
    if role == "node" and not re.fullmatch(r"[1-9][0-9]{0,8}", name):
        raise CertError(f"node name {name!r}: a node's certificate is named by its id (1, 2, ...), the identity "
                        "its peers dial")
    fixed = FIXED_NAMES.get(role)
    if fixed is not None and name != fixed:
        raise CertError(f"{role} name {name!r}: every process dials the {role} as {fixed!r}; issue "
                        f"`{role} {fixed}`")


def check_host(host: str) -> str:
    """An IP address or a DNS host name (letters, digits and '-' in dot-separated labels) for a certificate's
    subject alternative names; anything else is refused with the reason."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    name = host.rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(HOST_LABEL_RE.match(label) for label in labels):
        raise CertError(f"--host {host!r}: not an IP address or a DNS host name (dot-separated labels of letters, "
                        "digits and '-', at most 63 characters each)")
    if name.lower() == DOMAIN or name.lower().endswith("." + DOMAIN):
        raise CertError(f"--host {host!r}: names under .{DOMAIN} are identities, not hosts; one certificate "
                        "carries one identity")
    return name


class CertError(ValueError):
    """A certificate operation that cannot be done as asked (the message says why)."""


@dataclass(frozen=True, slots=True)
class Identity:
    role: str
    name: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise CertError(f"unknown role {self.role!r}: roles are {', '.join(ROLES)}")
        if not NAME_RE.match(self.name):
            raise CertError(f"name {self.name!r} must be 1-63 lowercase letters, digits or '-' (a DNS label)")

    @property
    def dns(self) -> str:
        """The subject alternative name that carries the identity, e.g. ``2.node.mpcnet``."""
        return f"{self.name}.{self.role}.{DOMAIN}"

    @property
    def stem(self) -> str:
        return f"{self.role}-{self.name}"

    @staticmethod
    def from_dns(name: str) -> "Identity | None":
        parts = name.split(".")
        if len(parts) != 3 or parts[2] != DOMAIN or parts[1] not in ROLES or not NAME_RE.match(parts[0]):
            return None
        return Identity(parts[1], parts[0])

    def __str__(self) -> str:
        return f"{self.role} {self.name}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    _write_private(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


def init_ca(directory: str | os.PathLike[str], common_name: str = "mpcnet cluster CA", days: int = 3650,
            force: bool = False) -> Path:
    """Create ``ca.key`` and ``ca.crt`` in ``directory``; refuses to overwrite an existing CA unless ``force``."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    crt = out / "ca.crt"
    if crt.exists() and not force:
        raise CertError(f"{crt} exists already: a new CA would orphan every certificate it issued "
                        "(pass --force to replace it)")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(out / "ca.key", key)
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt


def issue(directory: str | os.PathLike[str], role: str, name: str, hosts: Sequence[str] = (), days: int = 365,
          not_before: dt.datetime | None = None) -> tuple[Path, Path]:
    """Sign a certificate for ``role``/``name`` with the directory's CA; returns (cert path, key path).

    ``hosts``: extra DNS names or IP addresses (for clients that dial by address without mpcnet's target
    name).  ``not_before`` and ``days`` exist so that tests can make an expired certificate."""
    check_issuable(role, name)
    ident = Identity(role, name)
    extra = [check_host(host) for host in hosts]  # all checked before the CA key is read or a file written
    out = Path(directory)
    try:
        ca_key = serialization.load_pem_private_key((out / "ca.key").read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    except FileNotFoundError:
        raise CertError(f"no CA in {out}: run `mpcnet certs init --dir {out}` first") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{out / 'ca.key'} is not an EC key made by `mpcnet certs init`")
    sans: list[x509.GeneralName] = [x509.DNSName(ident.dns)]
    for host in extra:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or (_now() - dt.timedelta(minutes=5))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ident.dns)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    crt_path, key_path = out / f"{ident.stem}.crt", out / f"{ident.stem}.key"
    _write_key(key_path, key)
    crt_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return crt_path, key_path


def bootstrap(directory: str | os.PathLike[str], n_nodes: int, clients: Sequence[str] = ("main",),
              secret: bool = True) -> list[str]:
    """Make whatever is missing of a one-machine cluster's material in ``directory``: the CA, the
    coordinator's and the dealer's certificates ("main"), one per node 1..``n_nodes``, one per client name, and
    (``secret``) a random ``cluster.secret``.  Existing files are kept, so a restart reuses them.  Returns the
    names of the files it made."""
    import secrets as _secrets
    out = Path(directory)
    made: list[str] = []
    if not (out / "ca.crt").exists():
        init_ca(out)
        made.append("ca.crt")
    wanted = [("coordinator", "main"), ("dealer", "main")] + [("node", str(i)) for i in range(1, n_nodes + 1)]
    wanted += [("client", c) for c in clients]
    for role, name in wanted:
        stem = Identity(role, name).stem
        if not ((out / f"{stem}.crt").exists() and (out / f"{stem}.key").exists()):
            issue(out, role, name)
            made.append(f"{stem}.crt")
    if secret and not (out / "cluster.secret").exists():
        _write_private(out / "cluster.secret", _secrets.token_urlsafe(32).encode())
        made.append("cluster.secret")
    return made


def describe(path: str | os.PathLike[str]) -> dict[str, object]:
    """Identity, validity and issuer of a certificate file (for `mpcnet certs show`)."""
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = names.get_values_for_type(x509.DNSName)
        ips = [str(i) for i in names.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    idents = [str(i) for i in (Identity.from_dns(d) for d in dns) if i is not None]
    return {"file": str(path), "identity": idents, "dns": dns, "ips": ips,
            "issuer": cert.issuer.rfc4514_string(),
            "not_before": cert.not_valid_before_utc.isoformat(), "not_after": cert.not_valid_after_utc.isoformat()}
