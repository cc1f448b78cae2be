#!/usr/bin/env python3
"""docker-compose.yml -> a file `docker stack deploy` accepts (Docker Swarm).

The compose file is the one source; Swarm's loader (compose format 3.x) refuses a few things compose needs,
so this drops or rewrites exactly those and nothing else:
  * services with `profiles` (one-shot tools: on Swarm run them with `docker run --network <stack>_private`);
  * `restart` becomes `deploy.restart_policy` (unless-stopped/always -> any, on-failure -> on-failure, no -> none);
  * `build`, `profiles`, `container_name` go;
  * `depends_on` conditions become a plain list (Swarm does not order start-up: the roles restart until their
    peers answer, and the health checks gate traffic);
  * every service gets `endpoint_mode: dnsrr`: a service name resolves straight to its task, with no virtual IP
    (the VIP needs the kernel's IPVS, missing on many hosts; each role is one replica anyway);
  * published ports lose their host address and use `mode: host` (what dnsrr allows: the port is opened on the
    node that runs the task);
  * the networks become attachable overlays, so one-shot containers can join them.
Environment references such as ${MPCNET_IMAGE:-mpcnet:latest} are kept for `docker stack deploy` to resolve.

  python3 scripts/compose_to_stack.py docker-compose.yml > stack.yml && docker stack deploy -c stack.yml mpcnet
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

SWARM_IGNORES = ("build", "restart", "profiles", "container_name")


class _PlainDumper(yaml.SafeDumper):
    """No &anchors/*aliases in the output: every service reads on its own."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


RESTART = {"no": "none", "on-failure": "on-failure", "always": "any", "unless-stopped": "any"}


def to_stack(compose: dict[str, Any], ports: bool = True) -> dict[str, Any]:
    services: dict[str, Any] = {}
    for name, svc in compose.get("services", {}).items():
        if svc.get("profiles"):
            continue
        restart = str(svc.get("restart", "always"))
        svc = {k: v for k, v in svc.items() if k not in SWARM_IGNORES}
        deploy = dict(svc.get("deploy") or {})
        deploy.setdefault("restart_policy", {"condition": RESTART.get(restart, "any"), "delay": "2s"})
        deploy.setdefault("endpoint_mode", "dnsrr")
        svc["deploy"] = deploy
        deps = svc.get("depends_on")
        if isinstance(deps, dict):
            svc["depends_on"] = sorted(d for d in deps if d in compose["services"]
                                       and not compose["services"][d].get("profiles"))
        if "ports" in svc and not ports:
            del svc["ports"]
        if "ports" in svc:
            svc["ports"] = [_host_mode(str(p)) for p in svc["ports"]]
        services[name] = svc
    networks = {name: dict(net or {}, driver="overlay", attachable=True)
                for name, net in (compose.get("networks") or {}).items()}
    out: dict[str, Any] = {"version": "3.9", "services": services}
    if networks:
        out["networks"] = networks
    for key in ("volumes", "secrets", "configs"):
        if compose.get(key):
            out[key] = compose[key]
    return out


def _host_mode(port: str) -> dict[str, Any]:
    """'127.0.0.1:${X:-7100}:7100' -> {target: 7100, published: '${X:-7100}', mode: host} (host address dropped)."""
    parts = _split_port(port)
    target = int(parts[-1].split("/")[0])
    published = parts[-2] if len(parts) >= 2 else str(target)
    return {"target": target, "published": int(published) if published.isdigit() else published, "mode": "host"}


def _split_port(port: str) -> list[str]:
    # split on ':' outside ${...}
    parts, depth, cur = [], 0, ""
    for ch in port:
        depth += ch == "{"
        depth -= ch == "}"
        if ch == ":" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def main(argv: list[str]) -> int:
    ports = "--no-ports" not in argv  # --no-ports: publish nothing (reach the stack from attachable containers)
    files = [a for a in argv if a != "--no-ports"]
    if len(files) != 1:
        print("usage: compose_to_stack.py [--no-ports] docker-compose.yml > stack.yml", file=sys.stderr)
        return 2
    with open(files[0]) as fh:
        compose = yaml.safe_load(fh)
    yaml.dump(to_stack(compose, ports), sys.stdout, Dumper=_PlainDumper, sort_keys=False, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
