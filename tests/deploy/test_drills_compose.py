"""`mpcnet drill --compose --quick` in CI: the container and network drills against a compose project of its own
(docker-compose.yml + docker-compose.drills.yml, free loopback ports), every verdict met, nothing left behind."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from mpcnet.cluster import REPO_ROOT
from mpcnet.drill_compose import QUICK
from tests.deploy.conftest import docker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]


def test_quick_compose_drills_meet_every_expectation(images: tuple[str, str], compose: list[str],
                                                     tmp_path: Path) -> None:
    project = f"mpcnetdrill{secrets.token_hex(3)}"
    env = dict(os.environ, MPCNET_IMAGE=images[0], MPCNET_BROKER_IMAGE=images[1])
    try:
        out = subprocess.run([sys.executable, "-m", "mpcnet.cli", "drill", "--compose", "--quick", "--project",
                              project, "--out", str(tmp_path)], cwd=REPO_ROOT, env=env, capture_output=True,
                             text=True, timeout=1100)
    finally:
        leftovers = {kind: docker(*cmd, "--filter", f"label=com.docker.compose.project={project}", "-q").stdout.split()
                     for kind, cmd in (("containers", ("ps", "-a")), ("networks", ("network", "ls")),
                                       ("volumes", ("volume", "ls")))}
        if any(leftovers.values()):  # clean up for the next test before failing on it
            subprocess.run([*compose, "-p", project, "-f", "docker-compose.yml", "-f", "docker-compose.drills.yml",
                            "down", "-v", "--timeout", "5"], cwd=REPO_ROOT, env=env, capture_output=True, timeout=300)
    print(out.stdout[-6000:])
    (report,) = tmp_path.glob("drill-compose-quick-*.json")
    verdicts = json.loads(report.read_text())["verdicts"]
    missed = [v for v in verdicts if not v["ok"]]
    assert out.returncode == 0 and not missed, json.dumps(missed, indent=1) + out.stderr[-3000:]
    scenarios = {v["scenario"] for v in verdicts}
    assert set(QUICK) - {"kill-loop"} <= scenarios, scenarios
    by_name = {v["scenario"]: v for v in verdicts}
    # the faults really happened and were seen: the node's loss named it, the cut clients were dropouts
    assert "naming node 2" in by_name["node-kill"]["observed"]
    assert "naming node 2" in by_name["node-partition"]["observed"]
    assert "dropped [5, 6]" in by_name["client-partition"]["observed"]
    aborts = [v for v in verdicts if v["scenario"] == "secagg-kill-clients" and "abort" in v["expected"]]
    assert aborts and all(v["observed"].startswith("aborted") for v in aborts)
    assert "x1.0)" not in by_name["bandwidth"]["observed"]  # a 20 Mbit/s cap on 200k-element openings shows
    assert not any(leftovers.values()), leftovers
