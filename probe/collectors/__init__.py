"""Collectors: each reads one source and returns named float signals.

A signal the source cannot tell is left out of the result (unknown), never reported as 0.
A collector that cannot read its source at all raises; the agent then reports it as unknown.
"""

from __future__ import annotations

from typing import Protocol

Signals = dict[str, float]


class Collector(Protocol):
    """One source of signals, named for the `unknown` field and the `collector` label."""

    name: str

    async def collect(self) -> Signals:
        """Read the source now; raise when it cannot be read."""
        ...
