"""Canonical byte encoding of secure-aggregation messages.

Every message is a frozen dataclass registered with :func:`message` under a
type tag.  Its canonical bytes are deterministic JSON:

* UTF-8, ``sort_keys``, separators ``(",", ":")``, ASCII only;
* top level: ``{"type": <tag>, "v": 1, <field>: <value>, ...}``;
* ``int`` -> JSON integer (client ids < 2^31), ``str`` -> string,
  ``bool`` -> true/false, ``bytes`` -> lowercase hex string;
* a ring vector (numpy uint64) -> lowercase hex of its little-endian 8-byte
  words;
* ``tuple[...]`` -> JSON array in the tuple's order (the steps emit id lists
  sorted ascending); a nested dataclass -> JSON object of its fields.

:func:`encode` and :func:`decode` are inverse; ``decode(encode(m))`` gives an
equal message and ``encode`` of equal messages gives identical bytes, so
transcripts can be compared byte for byte.  The gRPC wire format carries
these bytes (or mirrors these fields) later.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from enum import Enum
from typing import Any, Callable, TypeVar

import numpy as np

from mpcnet.secagg.errors import ProtocolViolation

VERSION = 1
_REGISTRY: dict[str, type[Any]] = {}
_TAGS: dict[type[Any], str] = {}
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


def _to_json(value: object) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value, dtype="<u8").tobytes().hex()
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    raise TypeError(f"cannot encode a {type(value).__name__}")


def encode(msg: object) -> bytes:
    body = _to_json(msg)
    assert isinstance(body, dict)
    body["type"] = tag_of(msg)
    body["v"] = VERSION
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _from_json(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ProtocolViolation(f"{where}: expected a boolean")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ProtocolViolation(f"{where}: expected an integer")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ProtocolViolation(f"{where}: expected a string")
        return value
    if hint is bytes:
        try:
            return bytes.fromhex(value)
        except (TypeError, ValueError):
            raise ProtocolViolation(f"{where}: expected a hex string") from None
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise ProtocolViolation(f"{where}: unknown value") from None
    if origin is np.ndarray:
        try:
            raw = bytes.fromhex(value)
        except (TypeError, ValueError):
            raise ProtocolViolation(f"{where}: expected a hex string") from None
        if len(raw) % 8:
            raise ProtocolViolation(f"{where}: vector bytes not a multiple of 8")
        return np.frombuffer(raw, dtype="<u8").astype(np.uint64, copy=True)
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list) or len(args) != 2 or args[1] is not Ellipsis:
            raise ProtocolViolation(f"{where}: expected a list")
        return tuple(_from_json(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    raise TypeError(f"{where}: unsupported field type {hint!r}")


def _build(cls: type[T], obj: Any, where: str) -> T:
    if not isinstance(obj, dict):
        raise ProtocolViolation(f"{where}: expected an object")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if set(obj) != set(names):
        raise ProtocolViolation(f"{where}: fields {sorted(obj)} do not match {sorted(names)}")
    kwargs = {name: _from_json(obj[name], hints[name], f"{where}.{name}") for name in names}
    return cls(**kwargs)


def decode(data: bytes) -> object:
    """Parse canonical bytes back into the registered message they encode."""
    try:
        body = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolViolation("message is not canonical JSON") from None
    if not isinstance(body, dict) or body.pop("v", None) != VERSION:
        raise ProtocolViolation(f"message is not a version-{VERSION} object")
    tag = body.pop("type", None)
    cls = _REGISTRY.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise ProtocolViolation("unknown message type")
    msg = _build(cls, body, str(tag))
    if encode(msg) != data:
        raise ProtocolViolation(f"{tag}: bytes are not in canonical form")
    return msg
