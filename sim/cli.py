"""Command line of the simulated LM Studio server: parse options, serve with uvicorn."""

from __future__ import annotations

import argparse
import importlib.util
from typing import TYPE_CHECKING

import uvicorn

from sim.app import create_sim_app
from sim.config import SimConfig

if TYPE_CHECKING:
    import socket


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m sim`; defaults come from `SimConfig`."""
    defaults = SimConfig()
    parser = argparse.ArgumentParser(prog="llmgw sim", description="A simulated LM Studio server.")
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--slots", type=int, default=defaults.slots, help="parallel generations")
    parser.add_argument(
        "--queue",
        type=int,
        default=defaults.queue,
        help="requests that may wait for a slot; more get 503",
    )
    parser.add_argument(
        "--decode-rate",
        type=float,
        default=defaults.decode_rate,
        help="tokens/s of one slot when alone",
    )
    parser.add_argument(
        "--prefill-rate", type=float, default=defaults.prefill_rate, help="input tokens/s"
    )
    parser.add_argument(
        "--output-tokens",
        type=int,
        default=defaults.output_tokens,
        help="answer tokens when the request sets no limit",
    )
    parser.add_argument(
        "--reasoning-tokens",
        type=int,
        default=defaults.reasoning_tokens,
        help="reasoning tokens when the request asks for reasoning",
    )
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    parser.add_argument("--no-model", action="store_true", help="start with no model loaded")
    parser.add_argument(
        "--error-share",
        type=float,
        default=defaults.error_share,
        help="share of requests failing in 'error' mode",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    return parser


def config_from(args: argparse.Namespace) -> SimConfig:
    """A `SimConfig` from parsed options; raises ValueError on values out of range."""
    return SimConfig(
        host=args.host,
        port=args.port,
        model=args.model,
        slots=args.slots,
        queue=args.queue,
        decode_rate=args.decode_rate,
        prefill_rate=args.prefill_rate,
        output_tokens=args.output_tokens,
        reasoning_tokens=args.reasoning_tokens,
        api_key=args.api_key,
        no_model=args.no_model,
        error_share=args.error_share,
        seed=args.seed,
    )


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
    parser = build_parser()
    args = parser.parse_args(argv)
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
