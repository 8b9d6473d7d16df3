"""Command line of the simulated LM Studio server: parse options, serve with uvicorn."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import uvicorn

from sim.app import create_sim_app
from sim.cli_options import config_from, parse

if TYPE_CHECKING:
    import socket

    from sim.config import SimConfig


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints one line once its socket listens."""

    def __init__(self, config: uvicorn.Config, sim: SimConfig) -> None:
        super().__init__(config)
        self._sim = sim

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then announce where the simulator listens."""
        await super().startup(sockets)
        if self.started:
            print(self._announcement(), flush=True)

    def _announcement(self) -> str:
        port = self._sim.port
        if self.servers and self.servers[0].sockets:
            port = self.servers[0].sockets[0].getsockname()[1]  # the real one when --port 0
        host, model, slots = self._sim.host, self._sim.model, self._sim.slots
        return f"llmgw sim listening on http://{host}:{port} (model {model}, {slots} slots)"


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until interrupted; 2 on bad options, 1 if it could not listen."""
    parser, args = parse(argv)
    try:
        sim = config_from(args)
    except ValueError as exc:
        parser.error(str(exc))
    config = uvicorn.Config(
        create_sim_app(sim),
        host=sim.host,
        port=sim.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools",
        log_level="warning",
        access_log=False,
        server_header=False,  # LM Studio sends no `Server` header; nginx in front of it does
        timeout_graceful_shutdown=2,  # stalled streams would otherwise hold shutdown forever
    )
    server = AnnouncingServer(config, sim)
    server.run()
    return 0 if server.started else 1
