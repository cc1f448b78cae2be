"""Primitives of secure aggregation, wrapped from ``cryptography``.

* **Randomness.**  Every function that draws randomness takes a
  :class:`RandomSource`.  :class:`OsRandom` (``secrets``) is the default;
  :class:`SeededRandom` is AES-256-CTR keyed by HMAC-SHA256(seed, label), so a
  fixed 32-byte seed gives exact known-answer transcripts.  Never numpy's or
  ``random``'s generator.
* **Key agreement.**  X25519 (RFC 7748).  The raw shared secret is never used
  directly: it goes through HKDF-SHA256 (RFC 5869) with a distinct ``info``
  label per use (:data:`LABEL_SHARE_KEY` for share encryption,
  :data:`LABEL_PAIR_SEED` for pairwise mask seeds), the round id and, for the
  pairwise seed, the ordered pair of client ids.
* **Share transport.**  AES-256-GCM with a random 96-bit nonce; the
  associated data binds (label, round id, sender id, receiver id), so a
  ciphertext replayed to another receiver, sender or round fails.  Every
  failure (bad tag, short blob, wrong ids inside) is the one opaque
  :class:`~mpcnet.secagg.errors.DecryptionFailed`.
* **Signatures** (active mode).  Ed25519 over length-prefixed, labelled
  messages.

Labels are ``b"mpcnet/secagg/v1/<use>"``; byte strings inside labelled
messages are length-prefixed (4-byte big-endian length), ids are 4-byte
big-endian.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from typing import Iterable, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mpcnet.secagg.errors import DecryptionFailed, ProtocolViolation

KEY_BYTES = 32
SEED_BYTES = 32
NONCE_BYTES = 12
MAX_CLIENT_ID = 2**31 - 1

LABEL_RNG = b"mpcnet/secagg/v1/rng"
LABEL_SHARE_KEY = b"mpcnet/secagg/v1/share-key"
LABEL_SHARE_AAD = b"mpcnet/secagg/v1/share-aad"
LABEL_PAIR_SEED = b"mpcnet/secagg/v1/pair-seed"
LABEL_SELF_MASK = b"mpcnet/secagg/v1/self-mask"
LABEL_PAIR_MASK = b"mpcnet/secagg/v1/pair-mask"
LABEL_ADVERTISE_SIG = b"mpcnet/secagg/v1/advertise-sig"
LABEL_CONSISTENCY_SIG = b"mpcnet/secagg/v1/consistency-sig"
LABEL_GRAPH = b"mpcnet/secagg/v1/graph"
LABEL_QUANTIZE = b"mpcnet/secagg/v1/quantize"


# ---------------------------------------------------------------- randomness


class RandomSource(Protocol):
    """Where a step draws its randomness from."""

    def random_bytes(self, n: int) -> bytes: ...


class OsRandom:
    """The secure default: OS entropy via ``secrets``."""

    __slots__ = ()

    def random_bytes(self, n: int) -> bytes:
        return secrets.token_bytes(n)


class SeededRandom:
    """Deterministic stream: AES-256-CTR under HMAC-SHA256(seed, LABEL_RNG || label).

    For known-answer tests and transcripts only; the seed must be at least
    128 bits.  :meth:`child` derives an independent stream for a sub-use, so
    parties seeded from one master seed do not depend on call order.
    """

    __slots__ = ("_seed", "_enc")

    def __init__(self, seed: bytes, label: bytes = b"") -> None:
        if len(seed) < 16:
            raise ValueError(f"seed must be at least 16 bytes, got {len(seed)}")
        self._seed = hmac.new(seed, LABEL_RNG + b"\x00" + label, hashlib.sha256).digest()
        self._enc = Cipher(algorithms.AES(self._seed), modes.CTR(b"\x00" * 16)).encryptor()

    def random_bytes(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("n must be >= 0")
        return self._enc.update(bytes(n))

    def child(self, label: bytes) -> "SeededRandom":
        return SeededRandom(self._seed, label)

    def __repr__(self) -> str:
        return "SeededRandom(<seed hidden>)"


def resolve(rng: RandomSource | None) -> RandomSource:
    return OsRandom() if rng is None else rng


def randbelow(rng: RandomSource, bound: int) -> int:
    """Uniform integer in [0, bound) by rejection sampling (no modulo bias)."""
    if bound < 1:
        raise ValueError("bound must be >= 1")
    nbits = (bound - 1).bit_length()
    nbytes = (nbits + 7) // 8
    while True:
        value = int.from_bytes(rng.random_bytes(nbytes), "big") >> (8 * nbytes - nbits) if nbits else 0
        if value < bound:
            return value


# ---------------------------------------------------------------- encodings


def lp(data: bytes) -> bytes:
    """Length-prefixed bytes (4-byte big-endian length)."""
    return struct.pack(">I", len(data)) + data


def id_bytes(client_id: int) -> bytes:
    if not 0 <= client_id <= MAX_CLIENT_ID:
        raise ProtocolViolation(f"client id {client_id} outside [0, {MAX_CLIENT_ID}]")
    return struct.pack(">I", client_id)


def ids_bytes(ids: Iterable[int]) -> bytes:
    ordered = sorted(ids)
    return struct.pack(">I", len(ordered)) + b"".join(id_bytes(i) for i in ordered)


# ---------------------------------------------------------------- KDF


def hkdf_sha256(ikm: bytes, info: bytes, length: int = 32, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256 (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


# ---------------------------------------------------------------- X25519


def x25519_private(rng: RandomSource | None = None) -> X25519PrivateKey:
    """A fresh X25519 private key from 32 random bytes (clamped by X25519 itself)."""
    return X25519PrivateKey.from_private_bytes(resolve(rng).random_bytes(KEY_BYTES))


def x25519_raw(private: X25519PrivateKey) -> bytes:
    """The 32 raw private-key bytes (what Shamir shares for s_u^SK)."""
    return private.private_bytes_raw()


def x25519_key(private: bytes) -> X25519PrivateKey:
    """A private key object from its 32 raw bytes (parse once, agree with many peers)."""
    if len(private) != KEY_BYTES:
        raise ProtocolViolation(f"X25519 private key must be {KEY_BYTES} bytes, got {len(private)}")
    return X25519PrivateKey.from_private_bytes(private)


def x25519_public(private: X25519PrivateKey | bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(private) if isinstance(private, bytes) else private
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def x25519(private: X25519PrivateKey | bytes, peer_public: bytes) -> bytes:
    """Raw X25519 shared secret; a low-order peer key is a protocol violation."""
    if len(peer_public) != KEY_BYTES:
        raise ProtocolViolation(f"X25519 public key must be {KEY_BYTES} bytes, got {len(peer_public)}")
    key = X25519PrivateKey.from_private_bytes(private) if isinstance(private, bytes) else private
    try:
        return key.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:
        raise ProtocolViolation("X25519 key agreement failed: low-order public key") from None


def share_key(c_private: X25519PrivateKey | bytes, peer_c_public: bytes, round_id: str) -> bytes:
    """AES-256-GCM key for shares between two clients (symmetric in the pair)."""
    return hkdf_sha256(x25519(c_private, peer_c_public), LABEL_SHARE_KEY + lp(round_id.encode()))


def pair_seed(s_private: X25519PrivateKey | bytes, peer_s_public: bytes, round_id: str, a: int, b: int) -> bytes:
    """256-bit pairwise mask seed s_{a,b} = s_{b,a}."""
    lo, hi = sorted((a, b))
    info = LABEL_PAIR_SEED + lp(round_id.encode()) + id_bytes(lo) + id_bytes(hi)
    return hkdf_sha256(x25519(s_private, peer_s_public), info)


# ---------------------------------------------------------------- AES-GCM


def share_aad(round_id: str, sender: int, receiver: int) -> bytes:
    return LABEL_SHARE_AAD + lp(round_id.encode()) + id_bytes(sender) + id_bytes(receiver)


def seal(key: bytes, plaintext: bytes, aad: bytes, rng: RandomSource | None = None,
         nonce: bytes | None = None) -> bytes:
    """nonce (12 bytes) || AES-256-GCM ciphertext-and-tag.  The nonce is drawn from ``rng`` unless given (a
    caller sealing many messages draws their nonces at once: one OS call instead of one per message)."""
    if nonce is None:
        nonce = resolve(rng).random_bytes(NONCE_BYTES)
    elif len(nonce) != NONCE_BYTES:
        raise ValueError(f"an AES-GCM nonce is {NONCE_BYTES} bytes, got {len(nonce)}")
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`seal`; every failure is :class:`DecryptionFailed`."""
    if len(blob) < NONCE_BYTES + 16:
        raise DecryptionFailed()
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        raise DecryptionFailed() from None


# ---------------------------------------------------------------- Ed25519


def ed25519_private(rng: RandomSource | None = None) -> bytes:
    return resolve(rng).random_bytes(KEY_BYTES)


def ed25519_public(private: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def ed25519_sign(private: bytes, message: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(private).sign(message)


def ed25519_verify(public: bytes, signature: bytes, message: bytes) -> bool:
    if len(public) != KEY_BYTES or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def advertise_message(round_id: str, client_id: int, c_public: bytes, s_public: bytes) -> bytes:
    return LABEL_ADVERTISE_SIG + lp(round_id.encode()) + id_bytes(client_id) + lp(c_public) + lp(s_public)


def consistency_message(round_id: str, survivors: Iterable[int]) -> bytes:
    return LABEL_CONSISTENCY_SIG + lp(round_id.encode()) + ids_bytes(survivors)

