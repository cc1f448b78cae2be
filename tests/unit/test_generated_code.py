"""Generated protobuf code is committed; regenerating it must give no diff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOS = [str(ROOT / "proto/mpcnet/v1/mpc.proto"), str(ROOT / "proto/mpcnet/v1/secagg.proto")]


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto'}", f"--python_out={tmp_path}",
                    f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
                    *PROTOS], check=True, capture_output=True, timeout=120)
    for name in [f"{stem}{suffix}" for stem in ("mpc_pb2", "secagg_pb2") for suffix in (".py", ".pyi", "_grpc.py")]:
        fresh = (tmp_path / "mpcnet/v1" / name).read_text()
        committed = (ROOT / "mpcnet/v1" / name).read_text()
        assert fresh == committed, f"mpcnet/v1/{name} is stale: run `make proto` and commit"


def test_core_imports_no_network_modules() -> None:
    code = ("import sys, mpcnet.core.engine, mpcnet.core.program, mpcnet.core.sharing, mpcnet.core.preprocessing;"
            "bad=[m for m in sys.modules if m.split('.')[0] in ('grpc','asyncio','socket','aiomqtt')];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", f"pure core pulled in: {out.stdout}"
