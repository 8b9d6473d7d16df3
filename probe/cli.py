"""The `llmgw-probe` command (`llmgw probe` in the gateway's install): watch the model host and
publish what it sees to Redis."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from probe.assembly import open_agent
from probe.settings import ProbeSettings, SettingsError, load_settings
from probe.snapshot import to_json


def standalone() -> int:
    """Entry point of the llmgw-probe wheel's console script."""
    return main(prog="llmgw-probe")


def main(argv: list[str] | None = None, prog: str = "llmgw probe") -> int:
    """Run the probe until stopped; `--once` prints one snapshot. 2 on invalid settings."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--once", action="store_true", help="print one snapshot as JSON and exit")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    if args.once:
        print(asyncio.run(snapshot_once(settings)))
    else:
        asyncio.run(run_until_stopped(settings))
    return 0


async def snapshot_once(settings: ProbeSettings) -> str:
    """One snapshot as JSON, nothing published."""
    async with open_agent(settings, once=True) as agent:
        return to_json(await agent.tick())


async def run_until_stopped(settings: ProbeSettings) -> None:
    """Tick until SIGINT or SIGTERM, then close the clients and the metrics server."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop_signal, stop.set)
    async with open_agent(settings) as agent:
        await agent.run(stop)


def configure_logging(level: str) -> None:
    """Plain lines on stderr; httpx would log every call to the model server at INFO."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLevelName(level)))
