"""`mpcnet conformance` against live clusters: all checks pass on a correct one, over plaintext and over mutual
TLS; and the suite really fails (exit 1, the failing checks named) on a broken one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpcnet.cluster import REPO_ROOT, LocalCluster

pytestmark = pytest.mark.integration


def conformance(*args: str) -> tuple[int, list[dict[str, str]], str]:
    out_json = Path(os.environ.get("TMPDIR", "/tmp")) / f"conformance-{os.getpid()}-{len(args)}.json"
    out = subprocess.run([sys.executable, "-m", "mpcnet.cli", "conformance", *args, "--json", str(out_json)],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, COLUMNS="200"))
    checks = json.loads(out_json.read_text())
    out_json.unlink()
    return out.returncode, checks, out.stdout + out.stderr


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "mtls"])
def test_a_correct_cluster_passes_every_check(tls: bool) -> None:
    with LocalCluster(3, tls=tls) as c:
        args = ["--target", c.coordinator, "--secret-file", str(c.workdir / "cluster.secret")]
        if tls:
            args += ["--tls-dir", str(c.tls_dir)]
        code, checks, text = conformance(*args)
    c.cleanup()
    assert code == 0, text[-4000:]
    assert {ch["status"] for ch in checks} == {"pass"}, text[-4000:]
    assert {ch["group"] for ch in checks} == {"service", "mpc", "secagg", "negative"}
    assert len(checks) >= 23


def test_a_broken_cluster_fails_the_suite() -> None:
    # node 3 fails every Execute: the MPC checks must fail, and say so
    faults = {"node3": {"seed": "c", "rules": [{"method": "/mpcnet.v1.Node/Execute", "action": "error"}]}}
    with LocalCluster(3, stage_timeout_s=3, rpc_timeout_s=3, faults=faults) as c:
        code, checks, text = conformance("--target", c.coordinator)  # no secret: the SecAgg group is skipped
    c.cleanup()
    assert code == 1, text[-3000:]
    failed = {ch["name"] for ch in checks if ch["status"] == "fail"}
    assert "Beaver products (1000 integers)" in failed and "node 3" in text
    assert {ch["status"] for ch in checks if ch["group"] == "secagg"} == {"skip"}
    assert all(ch["status"] == "pass" for ch in checks if ch["group"] == "negative")


def test_an_unreachable_target_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    report = tmp_path / "checks.json"
    out = subprocess.run([sys.executable, "-m", "mpcnet.cli", "conformance", "--target", "127.0.0.1:1", "--timeout",
                          "60", "--json", str(report)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 1 and "the target 127.0.0.1:1 is unreachable" in text and "Traceback" not in text
    [check] = json.loads(report.read_text())  # the report a CI job collects: one failed check
    assert check["status"] == "fail" and "unreachable" in check["observed"]
    for args, words in ((["--secret-file", str(tmp_path / "missing")], "No such file"),
                        (["--tls-dir", str(tmp_path)], "missing"), (["--timeout", "0"], "deadline > 0"), (["--timeout", "inf"], "finite deadline"),
                        (["--json", str(tmp_path / "no" / "x.json")], "does not exist")):
        bad = subprocess.run([sys.executable, "-m", "mpcnet.cli", "conformance", "--target", "127.0.0.1:1", *args],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
