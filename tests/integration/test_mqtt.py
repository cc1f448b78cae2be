"""The MQTT event bus against a real Mosquitto broker on loopback (started here, on a free port).

* every event of a full round, seen by a subscriber to ``#``, carries no secret (no token, no input value,
  no bytes) and the lifecycle topics are all there;
* a client process's last will makes its clients dropouts at once even without the gRPC presence stream;
* a broker outage leaves computation unaffected, and events resume when the broker is back;
* ``mpcnet watch --json --round ID`` follows a round and exits 0 when it is done.

Without a ``mosquitto`` binary these tests skip locally (``apt-get install mosquitto``); with CI=true a
missing broker is a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import mpcnet
from mpcnet.cluster import REPO_ROOT, LocalCluster, free_port
from mpcnet.secagg_client import derive_input
from tests.integration.test_secagg_network import LENGTH, create_round, expected_sum, finish, result, spawn

pytestmark = pytest.mark.integration

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


class Broker:
    def __init__(self, workdir: Path) -> None:
        if MOSQUITTO is None:
            if os.environ.get("CI") == "true":
                pytest.fail("mosquitto is not installed (CI must install it: .ci/run does)")
            pytest.skip("no mosquitto binary: `apt-get install mosquitto` to run the MQTT tests")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        import socket
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


class Subscriber:
    """Everything published on ``topic_filter``, collected by an aiomqtt client in its own thread."""

    def __init__(self, broker: Broker, topic_filter: str = "#") -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run(broker, topic_filter)), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "subscriber did not connect"

    async def _run(self, broker: Broker, topic_filter: str) -> None:
        import aiomqtt

        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe(topic_filter, qos=1)
            self._ready.set()
            messages = client.messages.__aiter__()
            while not self._stop.is_set():
                try:
                    msg = await asyncio.wait_for(messages.__anext__(), 0.2)
                except TimeoutError:
                    continue
                self.messages.append((str(msg.topic), bytes(msg.payload)))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(t, json.loads(p)) for t, p in self.messages if p]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("mqtt"))
    yield b
    b.stop()


@pytest.fixture(scope="module")
def mqtt_cluster(broker: Broker) -> Iterator[LocalCluster]:
    with LocalCluster(n_nodes=3, mqtt=broker.address, cluster_name="drill") as cluster:
        yield cluster


def mqtt_env(broker: Broker) -> dict[str, str]:
    return {"MPCNET_MQTT": broker.address, "MPCNET_CLUSTER_NAME": "drill"}


def spawn_mqtt(cluster: LocalCluster, rnd: Any, ids: list[int], seed: str, broker: Broker,
               die_at: str | None = None, attend: bool = True) -> subprocess.Popen[str]:
    old = dict(os.environ)
    os.environ.update(mqtt_env(broker))
    try:
        proc = spawn(cluster, rnd, ids, seed, die_at) if attend else None
    finally:
        os.environ.clear()
        os.environ.update(old)
    if proc is not None:
        return proc
    cmd = [sys.executable, "-m", "mpcnet.cli", "client", "--coordinator", cluster.coordinator, "--round", rnd.id,
           "--ids", ",".join(map(str, ids)), "--timeout", "20", "--input-seed", seed, "--no-attend"]
    if die_at:
        cmd += ["--die-at", die_at]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), MPCNET_CLIENT_TOKENS=rnd.tokens_for(ids), **mqtt_env(broker))
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)


def test_round_events_carry_no_secret(mqtt_cluster: LocalCluster, broker: Broker) -> None:
    sub = Subscriber(broker, "#")
    try:
        ids = [1, 2, 3, 4, 5]
        rnd = create_round(mqtt_cluster, ids, t=3, stage_s=600.0)
        live = spawn_mqtt(mqtt_cluster, rnd, [1, 2, 3, 4], "events", broker)
        dying = spawn_mqtt(mqtt_cluster, rnd, [5], "events", broker, die_at="masked_input_collection")
        assert finish(dying)[0] == -9
        rc, _, err = finish(live)
        assert rc == 0, err
        res = result(mqtt_cluster, rnd)
        assert list(res.done.included) == [1, 2, 3, 4]
        time.sleep(0.5)  # let the last events arrive
    finally:
        sub.close()
    events = sub.events()
    topics = [t for t, _ in events]
    base = f"mpcnet/drill/rounds/{rnd.id}"
    for what in ("started", "stage", "dropped", "result"):
        assert f"{base}/{what}" in topics, (what, topics)
    stages = [e["stage"] for t, e in events if t == f"{base}/stage"]
    assert stages == ["advertise_keys", "share_keys", "masked_input_collection", "unmasking"]
    assert [e["client"] for t, e in events if t == f"{base}/dropped"] == [5]
    for who in ("coordinator/main", "dealer/main", "node/1", "node/2", "node/3"):
        assert any(t == f"mpcnet/drill/presence/{who}" and e["state"] == "up" for t, e in events), who
    client_presence = [e for t, e in events if t.startswith(f"mpcnet/drill/presence/secagg/{rnd.id}/")]
    assert any(e["state"] == "gone" and e["clients"] == [5] for e in client_presence)
    # nothing secret: no token, no input or aggregate value, only scalars and lists of scalars
    raw = b"\n".join(p for _, p in sub.messages)
    for token in rnd.tokens.values():
        assert token.encode() not in raw
    secret_numbers = {int(v) for c in ids for v in derive_input("events", c, LENGTH, 32)}
    secret_numbers |= {int(v) for v in expected_sum("events", [1, 2, 3, 4])}
    for _, event in events:
        for value in event.values():
            values = value if isinstance(value, list) else [value]
            assert all(v is None or isinstance(v, (bool, int, float, str)) for v in values)
            assert not any(isinstance(v, int) and v in secret_numbers for v in values)


def test_fedavg_rounds_publish_no_membership(mqtt_cluster: LocalCluster, broker: Broker) -> None:
    """Central DP at a sampling rate below 1 counts on nobody outside the FedAvg server knowing who (or how many)
    were sampled, so every FedAvg SecAgg round is created with withhold_membership: its events carry the round id
    only, and no stage or dropout is announced (here two of eight clients drop each round)."""
    from mpcnet.fl import data, fedavg, models

    ds = data.load("breast_cancer")
    m = models.make_model("logreg", ds.n_features, ds.n_classes)
    cfg = fedavg.FedAvgConfig(rounds=2, dropout=0.25)
    agg = fedavg.SecAggAggregator(mqtt_cluster.coordinator, mqtt_cluster.auth_metadata, clip=cfg.clip,
                                  max_total_samples=len(ds.y_train), stage_deadline_s=10)
    sub = Subscriber(broker, "mpcnet/drill/rounds/#")
    try:
        hist = fedavg.run_fedavg(m, models.SgdTrainer(m, epochs=1, lr=0.05), ds, data.split_iid(len(ds.y_train), 8),
                                 cfg, agg)
        time.sleep(0.5)  # let the last events arrive
    finally:
        sub.close()
    assert all(len(r.dropped) == 2 and not r.skipped for r in hist.rounds)
    events = [(t, e) for t, e in sub.events() if "/fedavg-" in t]
    rounds = [(t, e) for t, e in events if "-probe/" not in t]  # the aggregator's first, stand-in round aside
    assert sorted(t.rsplit("/", 1)[1] for t, _ in rounds) == ["result", "result", "started", "started"], events
    for topic, event in events:  # no ids, counts, threshold, stage or reason
        assert event == {"round": topic.split("/")[-2], "membership": "withheld"}, event


def test_last_will_makes_a_dead_process_a_dropout_at_once(mqtt_cluster: LocalCluster, broker: Broker) -> None:
    """No gRPC presence stream (--no-attend) and a 600 s stage deadline: only the MQTT will can end the wait."""
    ids = [1, 2, 3, 4, 5]
    rnd = create_round(mqtt_cluster, ids, t=3, stage_s=600.0)
    live = spawn_mqtt(mqtt_cluster, rnd, [1, 2, 3, 4], "will", broker, attend=False)
    dying = spawn_mqtt(mqtt_cluster, rnd, [5], "will", broker, die_at="masked_input_collection", attend=False)
    assert finish(dying)[0] == -9
    rc, _, err = finish(live)  # bounded by the 60 s process timeout, far below the 600 s deadline
    assert rc == 0, err
    res = result(mqtt_cluster, rnd)
    assert [(d.client_id, d.stage) for d in res.done.dropped] == [(5, "masked_input_collection")]
    from mpcnet.secagg_wire import aggregate_of
    assert np.array_equal(aggregate_of(res.done), expected_sum("will", [1, 2, 3, 4]))


def test_forged_will_drops_nobody(mqtt_cluster: LocalCluster, broker: Broker) -> None:
    """Anyone may publish to the broker: a 'gone' will without the clients' token proofs is ignored."""
    import aiomqtt

    ids = [1, 2, 3]
    rnd = create_round(mqtt_cluster, ids, t=3, stage_s=600.0)

    async def forge() -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            for proofs in (None, ["00" * 32] * 3):
                event: dict[str, Any] = {"state": "gone", "round": rnd.id, "clients": ids}
                if proofs is not None:
                    event["proofs"] = proofs
                await client.publish(f"mpcnet/drill/presence/secagg/{rnd.id}/forger", json.dumps(event), qos=1)

    asyncio.run(forge())
    time.sleep(0.3)
    rc, _, err = finish(spawn_mqtt(mqtt_cluster, rnd, ids, "forged", broker))
    assert rc == 0, err
    res = result(mqtt_cluster, rnd)
    assert list(res.done.included) == ids and not res.done.dropped


def test_broker_outage_leaves_computation_unaffected_and_events_resume(mqtt_cluster: LocalCluster,
                                                                        broker: Broker) -> None:
    broker.stop()
    try:
        party = mpcnet.connect(mqtt_cluster.coordinator, party="outage")
        job = party.create_job()
        party.share(job, "x", np.array([2, 3]))
        party.run(job, mpcnet.Program().mul("y", "x", "x").output("y", to=["outage"]))
        assert party.reveal(job, "y").tolist() == [4, 9]
        rnd = create_round(mqtt_cluster, [1, 2, 3], t=2)
        rc, _, err = finish(spawn(mqtt_cluster, rnd, [1, 2, 3], "outage"))
        assert rc == 0, err
        assert result(mqtt_cluster, rnd).state == "done"
    finally:
        broker.start()
    sub = Subscriber(broker, "mpcnet/drill/rounds/#")
    try:
        deadline = time.monotonic() + 20  # the coordinator reconnects within its back-off (<= 5 s)
        rnd2 = None
        while time.monotonic() < deadline:
            rnd2 = create_round(mqtt_cluster, [1, 2], t=2, join_s=2.0)
            time.sleep(0.5)
            if any(t.endswith(f"{rnd2.id}/started") for t, _ in sub.messages):
                break
        assert rnd2 is not None and any(t.endswith(f"{rnd2.id}/started") for t, _ in sub.messages)
    finally:
        sub.close()


def test_watch_follows_a_round(mqtt_cluster: LocalCluster, broker: Broker) -> None:
    rnd = create_round(mqtt_cluster, [1, 2, 3], t=2)
    watch = subprocess.Popen([sys.executable, "-m", "mpcnet.cli", "watch", "--mqtt", broker.address,
                              "--cluster-name", "drill", "--round", rnd.id, "--json", "--duration", "60"],
                             cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)))
    time.sleep(1.0)  # subscribed before the round moves
    rc, _, err = finish(spawn(mqtt_cluster, rnd, [1, 2, 3], "watch"))
    assert rc == 0, err
    out, werr = watch.communicate(timeout=60)
    assert watch.returncode == 0, werr
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert any(x["topic"].endswith(f"{rnd.id}/result") for x in lines)
