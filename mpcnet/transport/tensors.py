"""Arrays on the wire: little-endian uint64 in chunks of at most 1 MiB.

gRPC refuses messages over 4 MiB by default; chunking keeps every message
far below that, so a 10^6-element share (8 MB) travels as 8 messages and
the servers keep gRPC's default limit as a guard against oversized input.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from mpcnet.core.ring import RingArray
from mpcnet.errors import InvalidInput, ResourceExhausted
from mpcnet.v1 import mpc_pb2 as pb

CHUNK_ELEMENTS = 131072  # 1 MiB of uint64


def array_chunks(arr: RingArray, part: int = 0) -> Iterator[pb.TensorChunk]:
    """Split a uint64 array into TensorChunks; the first carries total_elements."""
    flat = np.ascontiguousarray(arr, dtype="<u8").ravel()
    n = flat.size
    if n == 0:
        yield pb.TensorChunk(data=b"", total_elements=0, part=part)
        return
    for start in range(0, n, CHUNK_ELEMENTS):
        piece = flat[start:start + CHUNK_ELEMENTS]
        yield pb.TensorChunk(data=piece.tobytes(), total_elements=n if start == 0 else 0, part=part)


class ArrayAssembler:
    """Collects chunks of one array, checking sizes as they arrive."""

    def __init__(self, expected: int | None, limit: int, what: str) -> None:
        self.expected = expected
        self.limit = limit
        self.what = what
        self.total: int | None = None
        self.out: RingArray | None = None
        self.filled = 0

    def add(self, chunk: pb.TensorChunk) -> None:
        if self.total is None:
            self.total = int(chunk.total_elements)
            if self.total < 0:
                raise InvalidInput(f"{self.what}: negative element count")
            if self.total > self.limit:
                raise ResourceExhausted(f"{self.what}: {self.total} elements exceed the limit of {self.limit}")
            if self.expected is not None and self.total != self.expected:
                raise InvalidInput(f"{self.what}: {self.total} elements sent, {self.expected} expected")
            self.out = np.empty(self.total, dtype=np.uint64)
        if len(chunk.data) % 8:
            raise InvalidInput(f"{self.what}: chunk of {len(chunk.data)} bytes is not whole uint64 elements")
        n = len(chunk.data) // 8
        if self.filled + n > self.total:
            raise InvalidInput(f"{self.what}: more data than the announced {self.total} elements")
        assert self.out is not None
        # One copy, straight into the result (the array is allocated once, from the announced size).
        self.out[self.filled:self.filled + n] = np.frombuffer(chunk.data, dtype="<u8")
        self.filled += n

    def result(self, shape: tuple[int, ...] | None = None) -> RingArray:
        if self.total is None or self.out is None:
            raise InvalidInput(f"{self.what}: no data received")
        if self.filled != self.total:
            raise InvalidInput(f"{self.what}: stream ended after {self.filled} of {self.total} elements")
        return self.out.reshape(shape) if shape is not None else self.out
