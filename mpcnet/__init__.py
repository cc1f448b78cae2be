"""mpcnet: privacy-preserving computation over gRPC.

The SDK in four verbs: ``connect``, ``Party.share``, ``Party.run``,
``Party.reveal``; programs are built with :class:`Program`.

Imports are lazy so that ``mpcnet.core`` (pure math) loads without grpc.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Program", "Party", "RunResult", "connect", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Program":
        from mpcnet.core.program import Program
        return Program
    if name in ("Party", "RunResult", "connect"):
        from mpcnet import sdk
        return getattr(sdk, name)
    raise AttributeError(f"module 'mpcnet' has no attribute {name!r}")
