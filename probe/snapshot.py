"""The probe snapshot: every known signal plus who, when and what is unknown."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from probe.collectors import Signals

Snapshot = dict[str, float | str]
# Integers above this lose precision as floats: write those as floats.
EXACT_INTEGERS = 2.0**53


def build_snapshot(
    signals: Signals,
    *,
    ts: float,
    host: str,
    interval: float,
    gpu_source: str,
    unknown: Iterable[str],
    power_source: str = "none",
) -> Snapshot:
    """Signals plus `ts`, `host`, `interval`, `gpu_source`, `power_source` (`none`: no
    energy fields) and comma-separated `unknown`."""
    return {
        **signals,
        "ts": ts,
        "host": host,
        "interval": interval,
        "gpu_source": gpu_source,
        "power_source": power_source,
        "unknown": ",".join(unknown),
    }


def number_text(value: float) -> str:
    """A number as Redis stores it: `3` for whole numbers, else the shortest exact form."""
    if value.is_integer() and abs(value) < EXACT_INTEGERS:
        return str(int(value))
    return repr(value)


def hash_fields(snapshot: Snapshot) -> dict[str, str]:
    """The snapshot as the strings of a Redis hash."""
    return {
        name: value if isinstance(value, str) else number_text(value)
        for name, value in snapshot.items()
    }


def to_json(snapshot: Snapshot) -> str:
    """The snapshot as the JSON message published on the channel."""
    return json.dumps(snapshot, sort_keys=True, separators=(",", ":"))
