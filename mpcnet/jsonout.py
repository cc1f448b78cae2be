"""JSON files mpcnet writes for people and other programs (run files, sweeps, receipts): strict JSON only.

Python's json writes an infinite float as ``Infinity``, which is not JSON: JavaScript's JSON.parse refuses it
and jq turns it into 1.797e308.  An infinite epsilon (no DP) is common here, so non-finite floats are spelled
as strings instead.
"""

from __future__ import annotations

import math
from typing import Any


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float spelled as a string ("inf", "-inf", "nan"); dump it with
    ``allow_nan=False``."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


__all__ = ["strict_json"]
