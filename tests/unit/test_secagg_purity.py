"""mpcnet.secagg is pure protocol math: no network, no event loop, no weak randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import mpcnet.secagg

PACKAGE = Path(mpcnet.secagg.__file__).resolve().parent
FORBIDDEN = {"grpc", "asyncio", "socket", "random", "aiomqtt", "ssl", "http", "urllib", "requests"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_network_asyncio_or_weak_rng_imports() -> None:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 15
    for path in files:
        for name in imported_modules(path):
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
        text = path.read_text()
        assert "np.random" not in text and "numpy.random" not in text, path.name


def test_one_module_per_round() -> None:
    for name in ("advertise_keys", "share_keys", "masked_input", "consistency_check", "unmasking"):
        src = (PACKAGE / f"{name}.py").read_text()
        for fn in ("def server_request", "def client_step", "def server_step"):
            assert fn in src, f"{name}.py lacks {fn}"
