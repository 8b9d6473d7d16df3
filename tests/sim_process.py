"""Run the simulated LM Studio server (`python -m sim`) as a real process for tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from support import eventually, free_port, wait_for_port

if TYPE_CHECKING:
    from collections.abc import Iterator

STOP_TIMEOUT = 5.0


@dataclass
class SimHandle:
    """A running simulator: where it listens, its process, and its `/_sim` controls."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    args: tuple[str, ...] = field(default=())
    # One client for the controls: building an httpx.Client costs tens of milliseconds.
    _controls: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=5.0), repr=False)

    def stats(self) -> dict[str, Any]:
        """`GET /_sim/stats`."""
        return self._call("GET", "/_sim/stats")

    def set_fault(self, mode: str, **extra: Any) -> None:
        """`POST /_sim/fault` with `mode` and e.g. `share=0.5`."""
        self._call("POST", "/_sim/fault", {"mode": mode, **extra})

    def healthy(self) -> SimHandle:
        """A clean slate for the next test: no fault, no generation left, zeroed counters."""
        self.set_fault("ok")
        eventually(lambda: self.stats()["active"] == 0)
        self.reset()
        return self

    def reset(self) -> None:
        """`POST /_sim/reset`: zero the counters."""
        self._call("POST", "/_sim/reset")

    def kill(self) -> None:
        """Kill the process at once (an outage); `restart()` brings it back on the same port."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """Terminate gracefully, and kill if that takes too long."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()
        _close_pipe(self.process)
        self._controls.close()

    def restart(self) -> None:
        """Stop if running, then start again with the same options on the same port."""
        self.stop()
        self.process = _spawn(self.port, self.args)
        self._controls = httpx.Client(timeout=5.0)
        wait_for_port(self.port)

    def _call(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        response = self._controls.request(method, self.url + path, json=body)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


@contextlib.contextmanager
def running_sim(*extra_args: str) -> Iterator[SimHandle]:
    """Start `python -m sim --port <free port> *extra_args`, yield its handle, stop it on exit."""
    port = free_port()
    handle = SimHandle(f"http://127.0.0.1:{port}", port, _spawn(port, extra_args), extra_args)
    try:
        wait_for_port(port)
        yield handle
    finally:
        handle.stop()


@contextlib.contextmanager
def running_sims(**named_args: tuple[str, ...]) -> Iterator[dict[str, SimHandle]]:
    """Several sims by name, each with its options, all spawned before any is waited for: a
    start is mostly Python's imports, so several cost little more than one."""
    handles: dict[str, SimHandle] = {}
    try:
        for name, args in named_args.items():
            port = free_port()
            handles[name] = SimHandle(f"http://127.0.0.1:{port}", port, _spawn(port, args), args)
        for handle in handles.values():
            wait_for_port(handle.port)
        yield handles
    finally:
        for handle in handles.values():  # all told at once, then each waited for
            if handle.process.poll() is None:
                handle.process.terminate()
        for handle in handles.values():
            handle.stop()


def _spawn(port: int, extra_args: tuple[str, ...]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "sim", "--port", str(port), *extra_args]
    return subprocess.Popen(command, stdout=subprocess.PIPE)


def _close_pipe(process: subprocess.Popen[bytes]) -> None:
    if process.stdout is not None:
        process.stdout.close()


class HeldStreams:
    """`count` streaming generations on a sim, held open in threads (each holding a slot)
    until `close()`."""

    def __init__(self, sim: SimHandle, count: int) -> None:
        from sim.config import SimConfig  # noqa: PLC0415 - only tests that hold streams need it

        self._stop = threading.Event()
        body = {"model": SimConfig().model, "input": "hi", "stream": True}
        self._threads = [
            threading.Thread(target=self._stream, args=(sim.url, body), daemon=True)
            for _ in range(count)
        ]
        for thread in self._threads:
            thread.start()
        eventually(lambda: sim.stats()["busy_slots"] == count)

    def _stream(self, url: str, body: dict[str, object]) -> None:
        with (
            httpx.Client(timeout=60) as client,
            client.stream("POST", url + "/v1/responses", json=body) as response,
        ):
            for _ in response.iter_bytes():
                if self._stop.is_set():
                    return

    def close(self) -> None:
        """Leave every stream (the sim frees the slots)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
