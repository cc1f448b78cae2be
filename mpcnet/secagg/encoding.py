"""Canonical byte encoding of secure-aggregation messages.

Every message is a frozen dataclass registered with :func:`message` under a
type tag.  Its canonical bytes are a small JSON header followed by the raw
words of its ring vectors::

    header length (4 bytes, big-endian) || header || vector words ...

* the header is deterministic JSON: UTF-8, ``sort_keys``, separators
  ``(",", ":")``, ASCII only; top level ``{"type": <tag>, "v": 2,
  <field>: <value>, ...}``;
* ``int`` -> JSON integer (client ids < 2^31), ``str`` -> string,
  ``bool`` -> true/false, ``bytes`` -> lowercase hex string (keys,
  ciphertexts and shares: a few hundred bytes each);
* a ring vector (numpy uint64; uint32 accepted) -> ``{"len": n, "word": w}`` in the header
  and its n elements as little-endian ``w``-byte words after it, in the
  order the vectors appear in the message (fields in declaration order);
  ``w`` is 4 when every element is below 2^32 (every vector of a k <= 32
  round) and 8 otherwise -- the smaller width is the canonical one; it
  decodes as a read-only view of those words (dtype uint32 or uint64);
* ``tuple[...]`` -> JSON array in the tuple's order (the steps emit id lists
  sorted ascending); a nested dataclass -> JSON object of its fields.

A masked vector of 10^5 32-bit elements is 400,000 bytes plus a ~60-byte
header (version 1 carried it as 16 hex characters per element).
:func:`encode` and :func:`decode` are inverse; ``decode(encode(m))`` gives an
equal message and ``encode`` of equal messages gives identical bytes, so
transcripts can be compared byte for byte.  The gRPC wire format carries
these bytes in its ``payload`` / ``response`` fields.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from enum import Enum
from typing import Any, Callable, TypeVar

import numpy as np

from mpcnet.secagg.errors import ProtocolViolation

VERSION = 2
MAX_HEADER_BYTES = 16 * 2**20
_REGISTRY: dict[str, type[Any]] = {}
_TAGS: dict[type[Any], str] = {}
# field names (declaration order) of every dataclass met by the encoder: dataclasses.fields() is slow per call
_DATACLASS_NAMES: dict[type[Any], tuple[str, ...]] = {}
T = TypeVar("T")


def message(tag: str) -> Callable[[type[T]], type[T]]:
    """Class decorator: register a message dataclass under ``tag``."""

    def register(cls: type[T]) -> type[T]:
        if tag in _REGISTRY:
            raise ValueError(f"message tag {tag!r} registered twice")
        _REGISTRY[tag] = cls
        _TAGS[cls] = tag
        return cls

    return register


def tag_of(msg: object) -> str:
    try:
        return _TAGS[type(msg)]
    except KeyError:
        raise TypeError(f"{type(msg).__name__} is not a registered message") from None


def _word_width(vec: np.ndarray[Any, Any]) -> int:
    return 4 if vec.size == 0 or int(vec.max()) < 2**32 else 8


def _to_json(value: object, blobs: list[bytes] | None) -> Any:
    """The header value of ``value``; appends vector words to ``blobs`` (None: header only)."""
    kind = type(value)
    # the common exact types first (a dict lookup each), the general rules below for the rest
    if kind is int or kind is str or kind is bool:
        return value
    if kind is bytes:
        return value.hex()  # type: ignore[attr-defined]
    if kind is tuple:
        return [_to_json(v, blobs) for v in value]  # type: ignore[attr-defined]
    names = _DATACLASS_NAMES.get(kind)
    if names is not None:
        return {name: _to_json(getattr(value, name), blobs) for name in names}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise TypeError("ring vectors must be one-dimensional")
        word = _word_width(value)  # on the array as it is: a decoded uint32 view needs no widening copy
        if blobs is not None:
            blobs.append(np.ascontiguousarray(value).astype("<u4" if word == 4 else "<u8").tobytes())
        return {"len": int(value.size), "word": word}
    if isinstance(value, tuple):
        return [_to_json(v, blobs) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if not issubclass(kind, Enum):
            _DATACLASS_NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
        return {f.name: _to_json(getattr(value, f.name), blobs) for f in dataclasses.fields(value)}
    raise TypeError(f"cannot encode a {type(value).__name__}")


def _encode_parts(msg: object, with_words: bool = True) -> tuple[bytes, list[bytes]]:
    blobs: list[bytes] | None = [] if with_words else None
    body = _to_json(msg, blobs)
    assert isinstance(body, dict)
    body["type"] = tag_of(msg)
    body["v"] = VERSION
    return _canonical_json(body).encode(), blobs or []


def _canonical_json(body: Any) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def encode(msg: object) -> bytes:
    header, blobs = _encode_parts(msg)
    return b"".join([len(header).to_bytes(4, "big"), header, *blobs])


class _Words:
    """The vector words after the header, consumed in order by the decoder."""

    __slots__ = ("data", "offset")

    def __init__(self, data: bytes, offset: int) -> None:
        self.data, self.offset = data, offset

    def take(self, length: int, word: int, where: str) -> np.ndarray[Any, Any]:
        end = self.offset + length * word
        if end > len(self.data):
            raise ProtocolViolation(f"{where}: vector words truncated")
        # a read-only view of the words, no copy: uint32 for 4-byte words (the server sums 32-bit masked
        # vectors as they are), uint64 for 8-byte words
        raw = np.frombuffer(self.data, dtype=np.uint32 if word == 4 else np.uint64, count=length, offset=self.offset)
        self.offset = end
        return raw


# Decoding walks the class's type hints, not the data: each field type gets a decoder built once
# (resolving hints and testing what kind of type a hint is costs more than decoding a short field).
_Decoder = Callable[[Any, str, "_Words"], Any]


def _make_decoder(hint: Any) -> _Decoder:
    origin = typing.get_origin(hint)
    if hint is bool:
        def boolean(value: Any, where: str, words: _Words) -> Any:
            if not isinstance(value, bool):
                raise ProtocolViolation(f"{where}: expected a boolean")
            return value
        return boolean
    if hint is int:
        def integer(value: Any, where: str, words: _Words) -> Any:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ProtocolViolation(f"{where}: expected an integer")
            return value
        return integer
    if hint is str:
        def string(value: Any, where: str, words: _Words) -> Any:
            if not isinstance(value, str):
                raise ProtocolViolation(f"{where}: expected a string")
            return value
        return string
    if hint is bytes:
        def hexbytes(value: Any, where: str, words: _Words) -> Any:
            try:
                out = bytes.fromhex(value)
            except (TypeError, ValueError):
                raise ProtocolViolation(f"{where}: expected a hex string") from None
            if out.hex() != value:  # fromhex also takes upper case and spaces
                raise ProtocolViolation(f"{where}: bytes are not in canonical form (lowercase hex, no spaces)")
            return out
        return hexbytes
    if isinstance(hint, type) and issubclass(hint, Enum):
        enum_cls = hint

        def enum(value: Any, where: str, words: _Words) -> Any:
            try:
                return enum_cls(value)
            except ValueError:
                raise ProtocolViolation(f"{where}: unknown value") from None
        return enum
    if origin is np.ndarray:
        def vector(value: Any, where: str, words: _Words) -> Any:
            if (not isinstance(value, dict) or set(value) != {"len", "word"} or type(value["word"]) is not int
                    or value["word"] not in (4, 8) or type(value["len"]) is not int or value["len"] < 0):
                raise ProtocolViolation(f"{where}: expected a vector descriptor {{\"len\": n, \"word\": 4|8}}")
            vec = words.take(value["len"], value["word"], where)
            if value["word"] == 8 and _word_width(vec) == 4:
                raise ProtocolViolation(f"{where}: bytes are not in canonical form (8-byte words for values below "
                                        "2^32)")
            return vec
        return vector
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) != 2 or args[1] is not Ellipsis:
            def not_a_list(value: Any, where: str, words: _Words) -> Any:
                raise ProtocolViolation(f"{where}: expected a list")
            return not_a_list
        item = _make_decoder(args[0])

        def sequence(value: Any, where: str, words: _Words) -> Any:
            if not isinstance(value, list):
                raise ProtocolViolation(f"{where}: expected a list")
            return tuple([item(v, f"{where}[{i}]", words) for i, v in enumerate(value)])
        return sequence
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        cls = hint

        def nested(value: Any, where: str, words: _Words) -> Any:
            return _build(cls, value, where, words)
        return nested

    def unsupported(value: Any, where: str, words: _Words) -> Any:
        raise TypeError(f"{where}: unsupported field type {hint!r}")
    return unsupported


def _from_json(value: Any, hint: Any, where: str, words: _Words) -> Any:
    return _make_decoder(hint)(value, where, words)


@functools.lru_cache(maxsize=None)
def _fields_of(cls: type[Any]) -> tuple[tuple[tuple[str, _Decoder], ...], frozenset[str], tuple[str, ...]]:
    """((field name, decoder) in declaration order, the names as a set, sorted) of a message class; once."""
    hints = typing.get_type_hints(cls)
    names = tuple(f.name for f in dataclasses.fields(cls))
    return tuple((name, _make_decoder(hints[name])) for name in names), frozenset(names), tuple(sorted(names))


def _build(cls: type[T], obj: Any, where: str, words: _Words) -> T:
    if not isinstance(obj, dict):
        raise ProtocolViolation(f"{where}: expected an object")
    fields, names, ordered = _fields_of(cls)  # type: ignore[arg-type]
    if obj.keys() != names:
        raise ProtocolViolation(f"{where}: fields {sorted(obj)} do not match {list(ordered)}")
    # declaration order, as the encoder appended the vector words
    kwargs = {name: dec(obj[name], f"{where}.{name}", words) for name, dec in fields}
    return cls(**kwargs)


def decode(data: bytes) -> object:
    """Parse canonical bytes back into the registered message they encode."""
    try:
        return _decode(data)
    except RecursionError:  # a header nested thousands deep
        raise ProtocolViolation("message header nested too deeply") from None


def _decode(data: bytes) -> object:
    if len(data) < 4:
        raise ProtocolViolation("message shorter than its header length")
    size = int.from_bytes(data[:4], "big")
    if not 2 <= size <= min(MAX_HEADER_BYTES, len(data) - 4):
        raise ProtocolViolation("message header length out of range")
    try:
        header = data[4:4 + size].decode("ascii")
        body = json.loads(header)
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError, or an integer too long to convert
        raise ProtocolViolation("message header is not canonical JSON") from None
    # Canonical bytes: the header is the canonical JSON of what it parses to (checked here, by the C encoder),
    # every value has one spelling (hex is lowercase without spaces, a vector's word width is the smallest that
    # fits: the field decoders check these), and the vector words fill the rest exactly (checked below).
    # Together that is "re-encoding the message gives the same bytes", without re-encoding it.
    if _canonical_json(body) != header:
        raise ProtocolViolation("message header is not in canonical form")
    if not isinstance(body, dict) or type(version := body.pop("v", None)) is not int or version != VERSION:
        raise ProtocolViolation(f"message is not a version-{VERSION} object")
    tag = body.pop("type", None)
    cls = _REGISTRY.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise ProtocolViolation("unknown message type")
    words = _Words(data, 4 + size)
    msg = _build(cls, body, str(tag), words)
    if words.offset != len(data):
        raise ProtocolViolation(f"{tag}: {len(data) - words.offset} trailing bytes after the vector words")
    return msg
