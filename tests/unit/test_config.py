from __future__ import annotations

from pathlib import Path

import pytest

from mpcnet.config import ConfigError, load_config


def test_toml_then_env_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[cluster]\nnodes = ["h1:1", "h2:2", "h3:3", "h4:4"]\ncoordinator = "c:9"\n'
                 '[timeouts]\nstage_s = 7\n[node]\nid = 2\nlisten = "0.0.0.0:2"\n')
    cfg = load_config(f, role="node", env={})
    assert cfg.n_nodes == 4 and cfg.node_id == 2 and cfg.listen == "0.0.0.0:2" and cfg.stage_timeout_s == 7
    cfg = load_config(f, role="node", env={"MPCNET_NODE_ID": "3", "MPCNET_COORDINATOR": "x:1"})
    assert cfg.node_id == 3 and cfg.coordinator == "x:1"
    cfg = load_config(f, role="node", env={"MPCNET_NODE_ID": "3"}, node_id=4)
    assert cfg.node_id == 4


def test_config_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="at least 2 compute nodes"):
        load_config(env={"MPCNET_NODES": "a:1"})
    with pytest.raises(ConfigError, match="not a valid int"):
        load_config(env={"MPCNET_NODE_ID": "one"})


def test_tls_and_events_sections(tmp_path: Path) -> None:
    from mpcnet import certs

    f = tmp_path / "c.toml"
    f.write_text('[cluster]\nnodes = ["h1:1", "h2:2"]\ndealer = "d:5"\ncoordinator = "c:9"\n'
                 '[tls]\ndir = "certs"\n[events]\nmqtt = "broker:1883"\ncluster = "prod"\n')
    cfg = load_config(f, role="node", env={"MPCNET_NODE_ID": "2"})
    assert cfg.tls_dir == str(tmp_path / "certs") and cfg.mqtt == "broker:1883" and cfg.cluster_name == "prod"
    assert load_config(f, env={"MPCNET_MQTT": "other:1", "MPCNET_CLUSTER_NAME": "x"}).mqtt == "other:1"
    # who must answer where: coordinator and dealer are "main", nodes their position
    assert str(cfg.expected_identity("h2:2")) == "node 2" and str(cfg.expected_identity("d:5")) == "dealer main"
    assert cfg.expected_identity("c:9").dns == "main.coordinator.mpcnet"
    with pytest.raises(ConfigError, match="not the coordinator"):
        cfg.expected_identity("elsewhere:1")
    with pytest.raises(ConfigError, match="mpcnet certs init"):
        cfg.tls_for("node")  # no certificates made yet: a clear error
    certs.init_ca(tmp_path / "certs")
    certs.issue(tmp_path / "certs", "node", "2")
    files = cfg.tls_for("node")
    assert files is not None and str(files.identity) == "node 2"
    assert load_config(env={}).tls_for("dealer") is None


def test_caller_identity_rules() -> None:
    from mpcnet.certs import Identity
    from mpcnet.transport.tls import NODE_ID_KEY, refusal

    node2, coord, alice = Identity("node", "2"), Identity("coordinator", "main"), Identity("client", "alice")
    assert refusal("/mpcnet.v1.Node/Exchange", node2, {NODE_ID_KEY: ["2"]}) is None
    assert "claims to come from node 3" in str(refusal("/mpcnet.v1.Node/Exchange", node2, {NODE_ID_KEY: ["3"]}))
    # a second claim (the servicer reads the first) is refused outright
    assert "2 times" in str(refusal("/mpcnet.v1.Node/Exchange", node2, {NODE_ID_KEY: ["3", "2"]}))
    assert "coordinator only" in str(refusal("/mpcnet.v1.Node/Execute", node2, {}))
    assert refusal("/mpcnet.v1.Node/Execute", coord, {}) is None
    assert "node only" in str(refusal("/mpcnet.v1.Dealer/FetchCorrections", alice, {}))
    assert refusal("/mpcnet.v1.Coordinator/RegisterParty", alice, {}) is None
    assert "needs a client certificate" in str(refusal("/mpcnet.v1.Coordinator/RegisterParty", None, {}))
    assert Identity.from_dns("2.node.mpcnet") == node2 and Identity.from_dns("2.node.example") is None
