"""Shared fixtures: real clusters of processes on loopback."""

from __future__ import annotations

import itertools
from typing import Iterator

import pytest

from mpcnet.cluster import LocalCluster

_names = itertools.count(1)


def unique(prefix: str) -> str:
    """Party names are unique per coordinator; tests share one cluster."""
    return f"{prefix}{next(_names)}"


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    c = LocalCluster(3, stage_timeout_s=20, rpc_timeout_s=10, job_timeout_s=120, max_elements=4_000_000,
                     log_level="DEBUG")
    c.start()
    yield c
    codes = c.stop()
    c.cleanup()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"


def plan_for(party, job_id: str, program):  # type: ignore[no-untyped-def]
    """Compile ``program`` exactly as the cluster does, from the job's declared inputs."""
    from mpcnet.core.program import SecretType, compile_program

    info = party.job(job_id)
    types = {s.name: SecretType(tuple(s.shape), s.frac_bits, s.bound) for s in info.inputs}
    return compile_program(program, types)
