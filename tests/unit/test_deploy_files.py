"""docker-compose.yml, its Swarm translation, and the small pieces the containers rely on (certs bootstrap,
seat claiming, the heartbeat health check, the secret file) -- as plain function calls, no docker needed."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from mpcnet import certs
from mpcnet.client_agent import claim_seat, new_rounds
from mpcnet.config import ConfigError, load_config
from mpcnet.cluster import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
from compose_to_stack import to_stack  # noqa: E402

ROLES = ("broker", "dealer", "node1", "node2", "node3", "coordinator", "client")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    return data


def test_every_long_running_service_is_health_checked_restarted_and_private(compose: dict[str, Any]) -> None:
    svcs = compose["services"]
    assert set(ROLES) | {"certs", "cli"} == set(svcs)
    for name in ROLES:
        s = svcs[name]
        assert s["healthcheck"]["test"][0] == "CMD", name
        assert s["restart"] == "unless-stopped", name
        assert s["networks"] == ["private"], name
        for port in s.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    for name in ("dealer", "node1", "node2", "node3", "coordinator", "client", "cli"):
        assert "certs:/var/lib/mpcnet/certs:ro" in svcs[name]["volumes"], name  # read-only everywhere but certs
        assert "MPCNET_CLUSTER_SECRET" not in svcs[name]["environment"], name  # a file, never a value
    assert svcs["certs"]["volumes"] == ["certs:/var/lib/mpcnet/certs"]
    assert svcs["coordinator"]["depends_on"] == {d: {"condition": "service_healthy"}
                                                 for d in ("dealer", "node1", "node2", "node3")}
    assert svcs["dealer"]["depends_on"]["certs"] == {"condition": "service_completed_successfully"}
    assert svcs["client"]["depends_on"] == {"coordinator": {"condition": "service_healthy"}}
    # the nodes' ids and addresses agree with the cluster's node list
    nodes = svcs["node1"]["environment"]["MPCNET_NODES"].split(",")
    for i in (1, 2, 3):
        env = svcs[f"node{i}"]["environment"]
        assert env["MPCNET_NODE_ID"] == str(i) and nodes[i - 1].endswith(env["MPCNET_LISTEN"].rsplit(":", 1)[1])
        assert f"node{i}-state:/var/lib/mpcnet/state" in svcs[f"node{i}"]["volumes"]


def test_the_drills_override_adds_only_drill_powers_and_the_base_file_has_none(compose: dict[str, Any]) -> None:
    drills: dict[str, Any] = yaml.safe_load((REPO_ROOT / "docker-compose.drills.yml").read_text())
    svcs = drills["services"]
    assert set(svcs) == {"dealer", "node1", "node2", "node3", "coordinator", "client", "drill-runner"}
    for name in ("dealer", "node1", "node2", "node3", "coordinator", "client"):
        assert svcs[name]["cap_add"] == ["NET_ADMIN"], name
        # the drills' deadlines: a frozen node is reported by the coordinator before the runner's job deadline
        assert float(svcs[name]["environment"]["MPCNET_STAGE_TIMEOUT_S"]) < 150, name
    assert "--drill-hooks" in svcs["client"]["command"]
    assert svcs["client"]["command"][:4] == compose["services"]["client"]["command"][:4]
    runner = svcs["drill-runner"]
    assert runner["networks"] == ["private"] and "ports" not in runner and runner["restart"] == "no"
    assert "certs:/var/lib/mpcnet/certs:ro" in runner["volumes"]
    for name, svc in compose["services"].items():  # no drill power leaks into the deployment file
        assert "cap_add" not in svc and "--drill-hooks" not in svc.get("command", []), name


def test_stack_translation_keeps_the_services_and_drops_only_what_swarm_refuses(compose: dict[str, Any]) -> None:
    stack = to_stack(compose)
    assert stack["version"] == "3.9"
    assert set(stack["services"]) == set(ROLES) | {"certs"}  # the profile-only cli is dropped
    for name, s in stack["services"].items():
        assert not {"restart", "build", "profiles", "container_name"} & set(s), name
        assert s["deploy"]["endpoint_mode"] == "dnsrr", name
        assert isinstance(s.get("depends_on", []), list), name
        assert s["image"] == compose["services"][name]["image"]
        assert s.get("command") == compose["services"][name].get("command")
    assert stack["services"]["certs"]["deploy"]["restart_policy"]["condition"] == "on-failure"
    assert stack["services"]["coordinator"]["deploy"]["restart_policy"]["condition"] == "any"
    assert stack["services"]["coordinator"]["ports"] == [
        {"target": 7100, "published": "${MPCNET_COORDINATOR_PORT:-7100}", "mode": "host"},
        {"target": 9100, "published": "${MPCNET_COORDINATOR_METRICS_PORT:-9100}", "mode": "host"}]
    assert stack["networks"]["private"] == {"driver": "overlay", "attachable": True}
    assert "ports" not in to_stack(compose, ports=False)["services"]["coordinator"]
    assert set(stack["volumes"]) == set(compose["volumes"])


def test_certs_bootstrap_makes_what_is_missing_and_keeps_the_rest(tmp_path: Path) -> None:
    made = certs.bootstrap(tmp_path, 2, ["main", "alice"])
    assert made == ["ca.crt", "coordinator-main.crt", "dealer-main.crt", "node-1.crt", "node-2.crt",
                    "client-main.crt", "client-alice.crt", "cluster.secret"]
    ca, secret = (tmp_path / "ca.crt").read_bytes(), (tmp_path / "cluster.secret").read_text()
    assert len(secret) >= 40
    for key in [*tmp_path.glob("*.key"), tmp_path / "cluster.secret"]:
        assert key.stat().st_mode & 0o077 == 0, key  # private to the owner
    (tmp_path / "node-2.key").unlink()
    assert certs.bootstrap(tmp_path, 3, ["main", "alice"]) == ["node-2.crt", "node-3.crt"]
    assert (tmp_path / "ca.crt").read_bytes() == ca and (tmp_path / "cluster.secret").read_text() == secret
    assert certs.bootstrap(tmp_path, 3, ["main", "alice"]) == []
    assert certs.describe(tmp_path / "node-3.crt")["identity"] == ["node 3"]


def _claim(args: tuple[str, int]) -> int | None:
    return claim_seat(Path(args[0]), "r1", [1, 2, 3, 4], f"proc{args[1]}")


def test_concurrent_agents_never_take_the_same_seat(tmp_path: Path) -> None:
    with mp.get_context("spawn").Pool(4) as pool:
        got = pool.map(_claim, [(str(tmp_path), i) for i in range(10)])
    seats = [g for g in got if g is not None]
    assert sorted(seats) == [1, 2, 3, 4] and got.count(None) == 6
    assert claim_seat(tmp_path, "r1", [1, 2, 3, 4], "late") is None
    assert claim_seat(tmp_path, "r2", [7], "other round") == 7


def test_new_rounds_reads_each_tokens_file_once_and_skips_old_or_malformed_ones(tmp_path: Path) -> None:
    (tmp_path / "a.tokens.json").write_text(json.dumps({"1": "t1", "2": "t2"}))
    (tmp_path / "bad.tokens.json").write_text("{not json")
    old = tmp_path / "old.tokens.json"
    old.write_text(json.dumps({"1": "x"}))
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    (tmp_path / "a.seat-1").write_text("someone")  # not a tokens file
    seen: set[str] = set()
    assert new_rounds(tmp_path, seen, max_age_s=600) == [("a", {1: "t1", 2: "t2"})]
    assert new_rounds(tmp_path, seen, max_age_s=600) == []


def health(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mpcnet.health_cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT, env=env)


def test_heartbeat_health_check(tmp_path: Path) -> None:
    beat = tmp_path / "alive"
    assert health("--heartbeat", str(beat)).returncode == 1
    beat.touch()
    assert health("--heartbeat", str(beat), "--max-age", "30").returncode == 0
    os.utime(beat, (time.time() - 120, time.time() - 120))
    out = health("--heartbeat", str(beat), "--max-age", "30")
    assert out.returncode == 1 and "old" in out.stderr


def test_role_health_check_names_the_dead_address() -> None:
    env = dict(os.environ, MPCNET_NODES="127.0.0.1:9,127.0.0.1:10", MPCNET_NODE_ID="1")
    env.pop("MPCNET_CONFIG", None)
    out = health("--role", "node", "--timeout", "1", env=env)
    assert out.returncode == 1 and "127.0.0.1:9" in out.stderr and "UNAVAILABLE" in out.stderr


def test_cluster_secret_comes_from_a_file(tmp_path: Path) -> None:
    f = tmp_path / "cluster.secret"
    f.write_text("s3cret-value\n")
    assert load_config(env={"MPCNET_CLUSTER_SECRET_FILE": str(f)}).cluster_secret == "s3cret-value"
    # an explicit value wins over the file
    assert load_config(env={"MPCNET_CLUSTER_SECRET_FILE": str(f),
                            "MPCNET_CLUSTER_SECRET": "direct"}).cluster_secret == "direct"
    with pytest.raises(ConfigError, match="cannot read cluster secret file"):
        load_config(env={"MPCNET_CLUSTER_SECRET_FILE": str(tmp_path / "missing")})
