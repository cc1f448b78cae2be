"""Configuration: a TOML file and/or environment variables (env wins).

Example (``mpcnet.toml``)::

    [cluster]
    coordinator = "127.0.0.1:7100"
    dealer = "127.0.0.1:7150"
    nodes = ["127.0.0.1:7201", "127.0.0.1:7202", "127.0.0.1:7203"]
    frac_bits = 16
    max_elements = 4000000      # largest array one secret may hold
    secret_file = "cluster.secret"  # shared by the cluster's roles; authenticates internal RPCs

    [timeouts]
    rpc_s = 30.0                # deadline of short control RPCs
    stage_s = 60.0              # how long a node waits for a peer's opening
    job_s = 600.0               # deadline of a whole RunJob
    output_ttl_s = 3600.0       # a node forgets a job's shares this long after it ends

    [coordinator]
    listen = "127.0.0.1:7100"

    [dealer]
    listen = "127.0.0.1:7150"

    [node]
    id = 1
    listen = "127.0.0.1:7201"
    state_dir = "/var/lib/mpcnet/node1"   # consumed batch ids survive restarts

    [privacy]                   # the coordinator's epsilon ledger for dp_* releases of MPC jobs
    ledger = "/var/lib/mpcnet/epsilon-ledger.sqlite"  # default <state_dir>/epsilon-ledger.sqlite
    default_budget = 10.0       # epsilon a party's data gets at its first DP release; 0 = refuse until set

Environment: MPCNET_CONFIG (file path), MPCNET_COORDINATOR, MPCNET_DEALER,
MPCNET_NODES (comma-separated), MPCNET_FRAC_BITS, MPCNET_MAX_ELEMENTS,
MPCNET_LISTEN, MPCNET_NODE_ID, MPCNET_STATE_DIR, MPCNET_RPC_TIMEOUT_S,
MPCNET_STAGE_TIMEOUT_S, MPCNET_JOB_TIMEOUT_S, MPCNET_OUTPUT_TTL_S, MPCNET_LOG_LEVEL,
MPCNET_CLUSTER_SECRET (or MPCNET_CLUSTER_SECRET_FILE: a file holding it),
MPCNET_TLS_DIR, MPCNET_TLS_NAME, MPCNET_MQTT, MPCNET_CLUSTER_NAME, MPCNET_METRICS_LISTEN,
MPCNET_LEDGER, MPCNET_DP_BUDGET.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

DEFAULT_COORDINATOR = "127.0.0.1:7100"
DEFAULT_DEALER = "127.0.0.1:7150"
DEFAULT_NODES = ("127.0.0.1:7201", "127.0.0.1:7202", "127.0.0.1:7203")


if TYPE_CHECKING:
    from mpcnet.certs import Identity
    from mpcnet.transport.tls import TlsFiles


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Config:
    coordinator: str = DEFAULT_COORDINATOR
    dealer: str = DEFAULT_DEALER
    nodes: tuple[str, ...] = DEFAULT_NODES
    frac_bits: int = 16
    max_elements: int = 4_000_000
    rpc_timeout_s: float = 30.0
    stage_timeout_s: float = 60.0
    job_timeout_s: float = 600.0
    output_ttl_s: float = 3600.0
    listen: str = ""
    node_id: int = 0
    state_dir: str = ""
    log_level: str = "INFO"
    cluster_secret: str = field(default="", repr=False)
    tls_dir: str = ""  # certificate directory (ca.crt, <role>-<name>.crt/.key); "" = plaintext (loopback only)
    tls_name: str = ""  # this process's certificate name; "" = "main" (node: its id)
    mqtt: str = ""  # MQTT broker host:port for events and presence; "" = the in-process bus
    cluster_name: str = "local"  # the <cluster> level of event topics
    metrics_listen: str = ""  # host:port of the Prometheus /metrics endpoint; "" = none
    ledger: str = ""  # the coordinator's epsilon ledger; "" = <state_dir>/epsilon-ledger.sqlite (or MPCNET_LEDGER's)
    dp_budget: float = 10.0  # epsilon budget of a party's data at its first DP release; 0 = refuse until set
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    def node_address(self, node_id: int) -> str:
        if not 1 <= node_id <= self.n_nodes:
            raise ConfigError(f"node id {node_id} outside 1..{self.n_nodes}")
        return self.nodes[node_id - 1]

    def tls_for(self, role: str) -> "TlsFiles | None":
        """This process's mTLS material, or None when no certificate directory is configured."""
        if not self.tls_dir:
            return None
        from mpcnet.certs import CertError
        from mpcnet.transport.tls import TlsFiles
        name = self.tls_name or (str(self.node_id) if role == "node" else "main")
        try:
            return TlsFiles.load(self.tls_dir, role, name)
        except CertError as exc:
            raise ConfigError(str(exc)) from None

    def expected_identity(self, address: str) -> "Identity":
        """Whose certificate a peer at ``address`` must present (coordinator and dealer are named 'main')."""
        from mpcnet.certs import Identity
        if address == self.dealer:
            return Identity("dealer", "main")
        if address in self.nodes:
            return Identity("node", str(self.nodes.index(address) + 1))
        if address == self.coordinator:
            return Identity("coordinator", "main")
        raise ConfigError(f"{address} is not the coordinator, the dealer or a node of this configuration")

    def validate(self) -> "Config":
        if self.n_nodes < 2:
            raise ConfigError(f"an MPC cluster needs at least 2 compute nodes, got {self.n_nodes}")
        if len(set(self.nodes)) != self.n_nodes:
            raise ConfigError("node addresses must be distinct")
        if not 0 <= self.frac_bits <= 30:
            raise ConfigError("frac_bits must be in 0..30")
        for name in ("rpc_timeout_s", "stage_timeout_s", "job_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        return self


def _read_secret(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read cluster secret file {path}: {exc.strerror}") from None


def load_config(path: str | os.PathLike[str] | None = None, role: str | None = None,
                env: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Defaults <- TOML file <- environment <- explicit overrides (CLI flags)."""
    env = os.environ if env is None else env
    cfg = Config()
    path = path or env.get("MPCNET_CONFIG")
    values: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
        cl = data.get("cluster", {})
        for key in ("coordinator", "dealer", "frac_bits", "max_elements"):
            if key in cl:
                values[key] = cl[key]
        if "nodes" in cl:
            values["nodes"] = tuple(cl["nodes"])
        if "secret_file" in cl:
            sf = Path(cl["secret_file"])
            values["cluster_secret"] = _read_secret(sf if sf.is_absolute() else p.parent / sf)
        tls = data.get("tls", {})
        if "dir" in tls:
            tdir = Path(tls["dir"])
            values["tls_dir"] = str(tdir if tdir.is_absolute() else p.parent / tdir)
        if "name" in tls:
            values["tls_name"] = str(tls["name"])
        if "listen" in data.get("metrics", {}):
            values["metrics_listen"] = str(data["metrics"]["listen"])
        ev = data.get("events", {})
        if "mqtt" in ev:
            values["mqtt"] = str(ev["mqtt"])
        if "cluster" in ev:
            values["cluster_name"] = str(ev["cluster"])
        pv = data.get("privacy", {})
        if "ledger" in pv:
            lp = Path(pv["ledger"])
            values["ledger"] = str(lp if lp.is_absolute() else p.parent / lp)
        if "default_budget" in pv:
            values["dp_budget"] = float(pv["default_budget"])
        to = data.get("timeouts", {})
        for key in ("rpc_s", "stage_s", "job_s"):
            if key in to:
                values[key.replace("_s", "_timeout_s")] = float(to[key])
        if "output_ttl_s" in to:
            values["output_ttl_s"] = float(to["output_ttl_s"])
        if role and role in data:
            sect = data[role]
            for key in ("listen", "state_dir", "log_level"):
                if key in sect:
                    values[key] = sect[key]
            if "id" in sect:
                values["node_id"] = int(sect["id"])
    env_map = {
        "MPCNET_COORDINATOR": ("coordinator", str), "MPCNET_DEALER": ("dealer", str),
        "MPCNET_FRAC_BITS": ("frac_bits", int), "MPCNET_MAX_ELEMENTS": ("max_elements", int),
        "MPCNET_LISTEN": ("listen", str), "MPCNET_NODE_ID": ("node_id", int),
        "MPCNET_STATE_DIR": ("state_dir", str), "MPCNET_RPC_TIMEOUT_S": ("rpc_timeout_s", float),
        "MPCNET_STAGE_TIMEOUT_S": ("stage_timeout_s", float), "MPCNET_JOB_TIMEOUT_S": ("job_timeout_s", float),
        "MPCNET_LOG_LEVEL": ("log_level", str), "MPCNET_OUTPUT_TTL_S": ("output_ttl_s", float),
        "MPCNET_CLUSTER_SECRET": ("cluster_secret", str), "MPCNET_TLS_DIR": ("tls_dir", str),
        "MPCNET_TLS_NAME": ("tls_name", str), "MPCNET_MQTT": ("mqtt", str),
        "MPCNET_CLUSTER_NAME": ("cluster_name", str), "MPCNET_METRICS_LISTEN": ("metrics_listen", str),
        "MPCNET_LEDGER": ("ledger", str), "MPCNET_DP_BUDGET": ("dp_budget", float),
    }
    for var, (key, conv) in env_map.items():
        if env.get(var):
            try:
                values[key] = conv(env[var])
            except ValueError:
                raise ConfigError(f"environment variable {var}={env[var]!r} is not a valid {conv.__name__}") from None
    if env.get("MPCNET_CLUSTER_SECRET_FILE") and not env.get("MPCNET_CLUSTER_SECRET"):
        # containers: the secret arrives as a mounted file (compose volume, swarm secret), never as image layers
        values["cluster_secret"] = _read_secret(Path(env["MPCNET_CLUSTER_SECRET_FILE"]))
    if env.get("MPCNET_NODES"):
        values["nodes"] = tuple(a.strip() for a in env["MPCNET_NODES"].split(",") if a.strip())
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = replace(cfg, **values)
    except TypeError as exc:
        raise ConfigError(str(exc)) from None
    return cfg.validate()
