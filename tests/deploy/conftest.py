"""Docker fixtures: the offline images (built once per session) and the compose command.

Without a docker engine these tests skip locally (install Docker Engine with compose, then `make test`);
with CI=true a missing engine or compose tool is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from mpcnet.cluster import REPO_ROOT

IMAGE = "mpcnet:test"
BROKER_IMAGE = "mpcnet-broker:test"


def missing(what: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (the CI machine must provide it)")
    pytest.skip(f"{what}: install Docker Engine with compose and run `make test` to run the docker tests")


def docker_ok() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert out.returncode == 0, f"docker {' '.join(args[:3])}: {out.stderr[-2000:]}"
    return out


def compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) when present, else docker-compose 1.29+; None without either."""
    from mpcnet.drill_compose import compose_command as found
    try:
        return found()
    except RuntimeError:
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def images() -> tuple[str, str]:
    """mpcnet:test and mpcnet-broker:test from scripts/build_image.sh (the Debian bases are cached once built)."""
    if not docker_ok():
        missing("no docker engine")
    out = subprocess.run(["bash", "scripts/build_image.sh"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=1200, env=dict(os.environ, IMAGE=IMAGE, BROKER_IMAGE=BROKER_IMAGE))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"image {IMAGE}:" in out.stdout and f"{BROKER_IMAGE}:" in out.stdout, out.stdout
    print(out.stdout.strip().splitlines()[-1])
    return IMAGE, BROKER_IMAGE


@pytest.fixture(scope="session")
def image(images: tuple[str, str]) -> str:
    return images[0]


@pytest.fixture(scope="session")
def compose() -> list[str]:
    cmd = compose_command()
    if cmd is None:
        missing("neither `docker compose` nor docker-compose is installed")
    assert cmd is not None
    return cmd
