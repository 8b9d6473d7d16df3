"""Run a system command without blocking the event loop, and say plainly why it failed."""

from __future__ import annotations

import asyncio
import contextlib
import shutil


class CommandFailed(Exception):
    """The command is missing, failed, or printed nothing useful."""


async def run_command(*argv: str) -> str:
    """stdout of `argv` as text; raises CommandFailed if it is missing or fails.

    The caller bounds the time (`asyncio.timeout`); a cancelled call kills the process.
    """
    path = shutil.which(argv[0])
    if path is None:
        raise CommandFailed(f"{argv[0]} is not installed or not on PATH")
    process = await asyncio.create_subprocess_exec(
        path, *argv[1:], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await process.communicate()
    finally:
        # When the caller's timeout cancels us: never leave a hung ioreg behind.
        if process.returncode is None:
            _kill(process)
            await process.wait()
    if process.returncode != 0:
        message = stderr.decode(errors="replace").strip()[:200]
        raise CommandFailed(f"{argv[0]} exited with {process.returncode}: {message}")
    return stdout.decode(errors="replace")


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
