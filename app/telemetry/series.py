"""Small helpers over prometheus-client: one-hot state gauges, label sets that come and go,
and histogram observations that carry a trace id as an exemplar."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from prometheus_client import Gauge, Histogram

_TRACE_ID: Final = re.compile(r"[0-9a-f]{32}")
_INVALID_TRACE_ID: Final = "0" * 32
_NOTHING_SHOWN: Final = "\0"  # not a state: a OneHot's first `set` always writes


class OneHot:
    """A gauge with a series per state: 1 for the current one, 0 for the others. Setting the
    state it already shows writes nothing (the upstream's is set on every answered chat).
    `prefix` holds the label values before the state's (a host's name), if the gauge has any."""

    def __init__(self, gauge: Gauge, states: Iterable[str], prefix: tuple[str, ...] = ()) -> None:
        self._gauge = gauge
        self._prefix = prefix
        self._states = list(states)
        self._series: dict[str, Gauge] = {}
        self._shown: str | None = _NOTHING_SHOWN

    def set(self, current: str | None) -> None:
        if current == self._shown:
            return
        if current is not None and current not in self._states:
            self._states.append(current)  # only ever `other`: values are bounded before
        for state in self._states:
            if (series := self._series.get(state)) is None:
                series = self._series[state] = self._gauge.labels(*self._prefix, state)
            series.set(1 if state == current else 0)
        self._shown = current


def replace_series(
    gauge: Gauge, prefix: tuple[str, ...], previous: set[str], current: Mapping[str, float]
) -> None:
    """Set the gauge's series under `prefix` to `current`, removing the ones no longer there."""
    for gone in previous - current.keys():
        gauge.remove(*prefix, gone)
    for name, value in current.items():
        gauge.labels(*prefix, name).set(value)


def observe(histogram: Histogram, seconds: float, trace_id: str | int | None) -> None:
    """Observe `seconds` (never below zero), with the trace id as exemplar when it is valid."""
    if trace_id is None:  # not tracing: the usual case
        histogram.observe(max(seconds, 0.0))
    else:
        histogram.observe(max(seconds, 0.0), exemplar=_exemplar(trace_id))


def _exemplar(trace_id: str | int | None) -> dict[str, str] | None:
    """`{"trace_id": ...}` for a valid W3C trace id (an OTel int or 32 hex digits), else None."""
    if isinstance(trace_id, int) and not isinstance(trace_id, bool):
        trace_id = format(trace_id, "032x") if 0 < trace_id < 2**128 else None
    if not isinstance(trace_id, str) or not _TRACE_ID.fullmatch(trace_id):
        return None
    return None if trace_id == _INVALID_TRACE_ID else {"trace_id": trace_id}
