"""`mpcnet watch`: live progress of SecAgg rounds and role presence from the MQTT event bus.

Subscribes to ``mpcnet/<cluster>/#`` and shows a rich table (one row per
round: stage, clients expected at that stage, dropouts, state; and who is
up, down or gone).  ``--json`` prints every event as a JSON line instead.
``--round ID`` ends the watch when that round is done or aborted;
``--duration`` bounds it in any case.  Exit 0 when the watched round was
done, 3 when it aborted, 4 when the time ran out, 2 when the broker cannot
be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from mpcnet.transport.mqtt_bus import parse_broker


@dataclass
class RoundView:
    round_id: str
    clients: int = 0
    threshold: int = 0
    stage: str = "starting"
    expected: int = 0
    withheld: bool = False  # a FedAvg round: its events carry no stage, count or client
    dropped: list[int] = field(default_factory=list)
    state: str = "running"
    detail: str = ""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mqtt", default=None, help="broker host:port (default MPCNET_MQTT)")
    p.add_argument("--cluster-name", default=None, help="topic cluster level (default MPCNET_CLUSTER_NAME or local)")
    p.add_argument("--round", default=None, dest="round_id", help="stop when this round is done or aborted")
    p.add_argument("--duration", type=float, default=3600.0, help="stop after this many seconds")
    p.add_argument("--json", action="store_true", help="print each event as a JSON line (no live display)")


def watch_main(args: argparse.Namespace) -> int:
    import os

    broker = args.mqtt or os.environ.get("MPCNET_MQTT", "")
    if not broker:
        print("mpcnet watch: no broker: pass --mqtt host:port or set MPCNET_MQTT", file=sys.stderr)
        return 2
    cluster = args.cluster_name or os.environ.get("MPCNET_CLUSTER_NAME") or "local"
    try:
        return asyncio.run(_watch(broker, cluster, args.round_id, args.duration, args.json))
    except KeyboardInterrupt:
        return 0


def _render(rounds: dict[str, RoundView], presence: dict[str, str]) -> Any:
    from rich.console import Group
    from rich.table import Table

    t = Table(title="SecAgg rounds")
    for col in ("round", "state", "stage", "expected", "dropped", "detail"):
        t.add_column(col)
    for r in rounds.values():
        colour = {"done": "green", "aborted": "red"}.get(r.state, "yellow")
        t.add_row(r.round_id, f"[{colour}]{r.state}[/]", r.stage, "-" if r.withheld else str(r.expected),
                  ", ".join(map(str, r.dropped)) or "-", r.detail)
    p = Table(title="presence")
    p.add_column("who")
    p.add_column("state")
    for who, state in sorted(presence.items()):
        p.add_row(who, {"up": "[green]up[/]", "down": "down", "gone": "[red]gone[/]"}.get(state, state))
    return Group(t, p)


async def _watch(broker: str, cluster: str, round_id: str | None, duration: float, as_json: bool) -> int:
    import aiomqtt
    from rich.console import Console
    from rich.live import Live

    host, port = parse_broker(broker)
    prefix = f"mpcnet/{cluster}/"
    rounds: dict[str, RoundView] = {}
    presence: dict[str, str] = {}
    outcome = 4
    deadline = time.monotonic() + duration
    console = Console(stderr=False)
    try:
        async with aiomqtt.Client(host, port, timeout=5) as client:
            await client.subscribe(prefix + "#", qos=1)
            live = None if as_json else Live(_render(rounds, presence), console=console, refresh_per_second=8)
            if live is not None:
                live.start()
            try:
                messages = client.messages.__aiter__()
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        message = await asyncio.wait_for(messages.__anext__(), left)
                    except (TimeoutError, StopAsyncIteration):
                        break
                    topic = str(message.topic)
                    try:
                        event = json.loads(bytes(message.payload))
                    except ValueError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    if as_json:
                        print(json.dumps({"topic": topic, "event": event}, sort_keys=True), flush=True)
                    rest = topic[len(prefix):].split("/")
                    if rest[0] == "presence" and len(rest) >= 3:
                        presence["/".join(rest[1:])] = str(event.get("state", "?"))
                    elif rest[0] == "rounds" and len(rest) == 3:
                        rid = str(event.get("round", rest[1]))
                        view = rounds.setdefault(rid, RoundView(rid))
                        what = rest[2]
                        withheld = event.get("membership") == "withheld"  # a FedAvg round: no counts to show
                        if withheld:
                            view.withheld, view.stage = True, "-"
                        if what == "started" and withheld:
                            view.detail = "membership withheld"
                        elif what == "started":
                            view.clients, view.threshold = int(event.get("clients", 0)), int(event.get("threshold", 0))
                            view.detail = f"{view.clients} clients, t = {view.threshold}"
                        elif what == "stage":
                            view.stage, view.expected = str(event.get("stage")), int(event.get("expected", 0))
                        elif what == "dropped":
                            view.dropped.append(int(event.get("client", 0)))
                        elif what == "result":
                            view.state = "done"
                            view.detail = ("membership withheld" if withheld else
                                           f"sum of {len(event.get('included', []))} inputs")
                        elif what == "aborted":
                            view.state = "aborted"
                            view.detail = "membership withheld" if withheld else str(event.get("reason", ""))
                        if round_id is not None and rid == round_id and view.state != "running":
                            outcome = 0 if view.state == "done" else 3
                            if live is not None:
                                live.update(_render(rounds, presence))
                            break
                    if live is not None:
                        live.update(_render(rounds, presence))
            finally:
                if live is not None:
                    live.stop()
    except aiomqtt.MqttError as exc:
        print(f"mpcnet watch: MQTT broker {broker} unavailable: {exc}", file=sys.stderr)
        return 2
    return outcome if round_id is not None else 0
