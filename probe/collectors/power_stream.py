"""A power sampler that runs alongside the probe (`macmon pipe`, `powermetrics`), read as it goes.

Both tools print one sample per interval for as long as they run, each the average power over
its own window. Starting one per reading would lose the time between readings and cost a
process start each time; instead one process keeps running, a task reads its samples as they
come, and each sample's watts times its window are added into joules per component. Windows follow
one another, so the sum covers the whole time the sampler ran.

The joules are this object's own running totals: a sampler that dies is started again at the
next reading and counting goes on from where it was. A reading reports the sampler's failure
(with its last words on stderr) once, then restarts it; a sampler that has printed nothing
valid for a while counts as failed too, so a stuck tool shows as unknown, not as flat power.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from probe.collectors.commands import CommandFailed
from probe.collectors.power import Channel

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

# launchd starts agents with PATH=/usr/bin:/bin:/usr/sbin:/sbin: look where Homebrew puts tools.
EXTRA_PATHS = ("/opt/homebrew/bin", "/usr/local/bin")
STREAM_LIMIT = 8 * 1024 * 1024  # one powermetrics plist with every sampler is ~300 KB
STOP_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class PowerSample:
    """One sample: watts per component, averaged over `seconds`."""

    watts: dict[str, float]
    seconds: float


def find_command(name: str) -> str | None:
    """`name` on PATH, or where Homebrew installs it."""
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(EXTRA_PATHS))


class SampledEnergy:
    """Joules per component from samples; one channel per component."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._joules: dict[str, float] = {}
        self.at: float | None = None  # monotonic time of the latest sample
        self.samples = 0

    def add(self, sample: PowerSample, at: float) -> None:
        """Count one sample's energy."""
        for component, watts in sample.watts.items():
            self._joules[component] = self._joules.get(component, 0.0) + watts * sample.seconds
        self.at = at
        self.samples += 1

    def channels(self) -> list[Channel]:
        """The running totals as channels, stamped with the latest sample's time."""
        if self.at is None:
            return []
        return [
            Channel(f"{self._source}:{component}", (component,), joules, self.at, from_zero=True)
            for component, joules in self._joules.items()
        ]


class Sampler:
    """Keeps one sampler process running and its samples counted."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        record: Callable[[asyncio.StreamReader], Awaitable[bytes]],
        parse: Callable[[bytes], PowerSample],
        stale_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._argv = list(argv)
        self._record, self._parse = record, parse
        self._stale_after, self._clock = stale_after, clock
        self.energy = SampledEnergy(self._argv[0].rsplit("/", 1)[-1])
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self._stderr: deque[bytes] = deque(maxlen=20)
        self._error: str | None = None  # the latest sample that did not parse

    async def read(self) -> list[Channel]:
        """The channels so far; starts the sampler, or reports (then restarts) a dead one."""
        if self._task is None:
            await self._start()
        elif self._task.done():
            failure = self._describe_exit()
            await self.aclose()
            raise CommandFailed(failure)
        if self._stale():
            raise CommandFailed(self._describe_silence())
        return self.energy.channels()

    async def aclose(self) -> None:
        """Stop the process and its reader."""
        process, task, self._process, self._task = self._process, self._task, None, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), STOP_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _start(self) -> None:
        path = find_command(self._argv[0])
        if path is None:
            raise CommandFailed(f"{self._argv[0]} is not installed or not on PATH")
        self._process = await asyncio.create_subprocess_exec(
            path,
            *self._argv[1:],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=STREAM_LIMIT,
        )
        self._started_at, self._error = self._clock(), None
        self._stderr.clear()
        self._task = asyncio.create_task(self._pump(self._process))

    async def _pump(self, process: asyncio.subprocess.Process) -> None:
        stdout, stderr = process.stdout, process.stderr
        if stdout is None or stderr is None:  # both are pipes: never, but mypy cannot know
            return
        await asyncio.gather(self._samples(stdout), self._drain(stderr))
        await process.wait()

    async def _samples(self, stdout: asyncio.StreamReader) -> None:
        while record := await self._record(stdout):
            try:
                sample = self._parse(record)
            except (ValueError, KeyError, TypeError) as exc:
                self._error = f"{type(exc).__name__}: {exc}"[:200]
                continue
            self.energy.add(sample, self._clock())

    async def _drain(self, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():
            self._stderr.append(line)

    def _stale(self) -> bool:
        latest = max(self.energy.at or 0.0, self._started_at)  # samples since the last start
        return latest + self._stale_after < self._clock()

    def _describe_exit(self) -> str:
        code = self._process.returncode if self._process is not None else None
        said = b"".join(self._stderr).decode(errors="replace").strip()[-200:]
        return f"{self._argv[0]} exited with {code}: {said or 'nothing on stderr'}"

    def _describe_silence(self) -> str:
        why = f"; last sample: {self._error}" if self._error else ""
        return f"no sample from {self._argv[0]} for {self._stale_after:g} s{why}"


async def read_line(stream: asyncio.StreamReader) -> bytes:
    """The next line, b"" at the end (`macmon pipe` prints one JSON document a line)."""
    return await stream.readline()


async def read_plist(stream: asyncio.StreamReader) -> bytes:
    """The next plist document, b"" at the end: powermetrics ends each with `</plist>` and
    puts a NUL between documents."""
    try:
        return await stream.readuntil(b"</plist>")
    except asyncio.IncompleteReadError:
        return b""
