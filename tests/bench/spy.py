"""Where the gateway's time goes: py-spy samples of the running process, folded into the frames
and libraries that hold its CPU. Used only when py-spy is installed (`pip install py-spy`)."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

RATE = 1000  # samples per second of busy time; idle time is not sampled
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")
STDLIB_ROOT = re.compile(r"^.*/lib/python3\.\d+/")
# Libraries by the first part of their path inside site-packages.
LIBRARIES = {
    "app": "llmgw (app/)",
    "litestar": "Litestar",
    "uvicorn": "uvicorn",
    "h11": "h11 (HTTP/1.1 parsing, server and client side)",
    "httpx": "httpx / httpcore (upstream client)",
    "httpcore": "httpx / httpcore (upstream client)",
    "anyio": "anyio / sniffio",
    "sniffio": "anyio / sniffio",
    "redis": "redis-py",
    "opentelemetry": "OpenTelemetry",
    "prometheus_client": "prometheus_client",
    "msgspec": "msgspec",
}
# Our own entry points: on every stack, so they say nothing about where the time goes.
ENTRY_POINTS = ("app/__main__.py", "app/cli.py")
IDLE = "idle, or the event loop's own C code"


def binary() -> str | None:
    """py-spy next to this interpreter, or on PATH; None when not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextmanager
def recording(pid: int, output: Path) -> Iterator[bool]:
    """Sample `pid` (non-blocking: the gateway is never paused) while the block runs; yields
    whether py-spy is recording."""
    spy = binary()
    if spy is None:
        yield False
        return
    command = [spy, "record", "--pid", str(pid), "--rate", str(RATE), "--nonblocking"]
    command += ["--full-filenames", "--format", "raw", "--output", str(output)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield True
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its samples on Ctrl-C
        process.wait(timeout=60)


def path_of(frame: str) -> str:
    """The frame's file, relative to its package, or to the project for app/."""
    match = FRAME.match(frame)
    path = match["file"] if match else frame
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    if "/app/" in path:
        return "app/" + path.rsplit("/app/", 1)[1]
    return STDLIB_ROOT.sub("", path)


def short(frame: str) -> str:
    """`function (file)`, without the line."""
    match = FRAME.match(frame)
    return f"{match['function']} ({path_of(frame)})" if match else frame


def library(frame: str) -> str | None:
    """The library a frame's code belongs to; None for the standard library."""
    match = FRAME.match(frame)
    path = match["file"] if match else frame
    if path.startswith("<") or (STDLIB_ROOT.match(path) and "site-packages/" not in path):
        return None
    if not path.endswith(".py"):  # a torn read of a frame that was changing: no file
        return None
    top = path_of(frame).split("/", 1)[0].removesuffix(".py")
    return LIBRARIES.get(top, top)


def owner(frames: list[str]) -> str:
    """Who a sample's time is spent for: the innermost frame outside the standard library
    (asyncio and contextlib work for whoever called them). A stack that ends in the event
    loop's runner is idle time, which py-spy cannot tell apart in this sandbox."""
    if frames[-1].startswith(("Runner.run (", "run_forever (", "run_until_complete (")):
        return IDLE
    for frame in reversed(frames):
        name = library(frame)
        if name is not None and not path_of(frame).startswith(ENTRY_POINTS):
            return name
    return IDLE


def fold(raw: Path, limit: int = 12) -> dict[str, object]:
    """Busy samples by library (see `owner`), the hottest innermost frames, and the gateway's
    own functions by inclusive time."""
    parts: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count, frames = int(count_text), stack.split(";")
        parts[owner(frames)] += count
        if owner(frames) == IDLE:
            continue
        leaves[short(frames[-1])] += count
        mine = {short(f) for f in frames if path_of(f).startswith("app/")}
        for frame in mine - {short(f) for f in frames if path_of(f).startswith(ENTRY_POINTS)}:
            ours[frame] += count
    idle = parts.pop(IDLE, 0)
    return {
        "samples": sum(parts.values()),
        "idle_samples": idle,
        "components": parts.most_common(),
        "leaves": leaves.most_common(limit),
        "gateway_inclusive": ours.most_common(limit),
    }


def markdown(profile: dict[str, Any]) -> list[str]:
    """The report's profile section."""
    lines = ["", "## Where the gateway's time goes (py-spy)", ""]
    if not profile.get("samples"):
        return [*lines, f"Not profiled: {profile.get('unavailable', 'no samples')}."]
    total, per_chat = profile["samples"], profile["cpu_ms_per_chat"]

    def rows(items: list[tuple[str, int]], code: bool) -> list[str]:
        quote = "`" if code else ""
        return [
            f"| {quote}{name}{quote} | {count / total:.1%} | {count / total * per_chat:.2f} ms |"
            for name, count in items
        ]

    return [
        *lines,
        (
            f"py-spy (non-blocking, {profile['rate']} Hz) on the gateway during a repeat of the "
            f"1-stream run ({profile['chats']} chats, {per_chat:.2f} ms of CPU per chat there), "
            f"so the latencies above are not perturbed: {total} busy samples. Samples that end "
            f"in the event loop's runner ({profile['idle_samples']}) are idle time, which py-spy "
            "cannot tell apart here, and are left out. A sample counts for the innermost frame "
            "outside the standard library (asyncio and contextlib work for whoever called "
            "them); ms per chat is the share of the measured CPU per chat."
        ),
        "",
        "| library | share | per chat |",
        "| --- | ---: | ---: |",
        *rows(profile["components"], code=False),
        "",
        "| hottest innermost frames | share | per chat |",
        "| --- | ---: | ---: |",
        *rows(profile["leaves"], code=True),
        "",
        "| the gateway's own functions, inclusive | share | per chat |",
        "| --- | ---: | ---: |",
        *rows(profile["gateway_inclusive"], code=True),
    ]
