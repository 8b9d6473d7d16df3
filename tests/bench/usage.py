"""What a server process uses, by its own counters (psutil): CPU time, memory, sockets."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil  # type: ignore[import-untyped]  # no stubs in the dev extra

if TYPE_CHECKING:
    from collections.abc import Iterator

KIB = 1024


@dataclass
class Spent:
    """CPU seconds and wall seconds of one measured block (filled in when it ends)."""

    seconds: float = 0.0
    wall: float = 0.0

    @property
    def busy_share(self) -> float:
        """Share of one core the process kept busy."""
        return self.seconds / self.wall if self.wall > 0 else 0.0


class CpuClock:
    """User plus system CPU time of one process (all its threads)."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)

    def now(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    @contextmanager
    def measure(self) -> Iterator[Spent]:
        """The CPU time the process spends while the block runs."""
        spent = Spent()
        cpu, wall = self.now(), time.perf_counter()
        try:
            yield spent
        finally:
            spent.seconds = self.now() - cpu
            spent.wall = time.perf_counter() - wall


def rss(pid: int) -> int:
    """Resident set size in bytes."""
    return int(psutil.Process(pid).memory_info().rss)


def settled_rss(pid: int, samples: int = 5, every: float = 0.3) -> int:
    """Median RSS over a few samples, so one allocation burst does not decide."""
    values = []
    for _ in range(samples):
        values.append(rss(pid))
        time.sleep(every)
    return sorted(values)[len(values) // 2]


def open_connections(pid: int) -> int:
    """TCP sockets the process holds (listening, established, closing)."""
    return len(psutil.Process(pid).net_connections(kind="tcp"))
