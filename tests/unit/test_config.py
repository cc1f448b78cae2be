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
