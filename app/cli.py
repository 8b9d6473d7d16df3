"""The `llmgw` command: serve the gateway, run the simulated model server, or both as a demo."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.settings import Settings


DEMO_POSTS = Path(__file__).parent / "posts" / "demo"  # the demo's sample posts


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0911 - one return a command
    """Entry point of the console script."""
    parser = argparse.ArgumentParser(prog="llmgw", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the gateway (configured by LLMGW_* variables)")
    commands.add_parser("sim", help="run the simulated LM Studio server", add_help=False)
    commands.add_parser("probe", help="run the probe agent on the model host", add_help=False)
    commands.add_parser("demo", help="run the simulated model server and the gateway together")
    commands.add_parser(
        "doctor", help="check every hop from here to the model, in order", add_help=False
    )
    commands.add_parser("keys", help="create, list and revoke API keys", add_help=False)
    commands.add_parser(
        "posts",
        help="index the owner's posts for the model to read, list, search, evaluate",
        add_help=False,
    )
    commands.add_parser(
        "report", help="reports from the metrics: energy per answer by model", add_help=False
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "sim":
        from sim.cli import main as sim_main  # noqa: PLC0415 - the sim's own options

        return sim_main(rest)
    if args.command == "probe":
        from probe.cli import main as probe_main  # noqa: PLC0415 - needs no Litestar

        return probe_main(rest)
    if args.command == "doctor":
        from app.doctor.run import main as doctor_main  # noqa: PLC0415 - needs no Litestar

        return doctor_main(rest)
    if args.command == "keys":
        from app.access.cli import main as keys_main  # noqa: PLC0415 - needs no Litestar

        return keys_main(rest)
    if args.command == "posts":
        from app.posts.cli import main as posts_main  # noqa: PLC0415 - needs no Litestar

        return posts_main(rest)
    if args.command == "report":
        from app.report.cli import main as report_main  # noqa: PLC0415 - no Litestar

        return report_main(rest)
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    return serve() if args.command == "serve" else demo()


def _settings(**overrides: object) -> Settings | None:
    from app.settings import SettingsError, load_settings  # noqa: PLC0415

    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        print(f"llmgw: {exc}", file=sys.stderr)
        return None


def serve(**overrides: object) -> int:
    """Run the gateway until interrupted; 2 when the configuration is invalid."""
    settings = _settings(**overrides)
    if settings is None:
        return 2
    import uvicorn  # noqa: PLC0415 - keeps `llmgw sim --help` light

    from app.server.app import create_app  # noqa: PLC0415
    from app.telemetry.logs import configure_logging  # noqa: PLC0415
    from app.telemetry.tracing import configure_tracing  # noqa: PLC0415

    configure_logging(settings.log_level)
    if configure_tracing():
        logging.getLogger("llmgw").info("tracing on, exporter chosen by OTEL_* variables")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="auto",
        http=_http_protocol(settings),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        # The gateway reads X-Forwarded-For itself, and only from LLMGW_TRUSTED_PROXIES.
        proxy_headers=False,
        server_header=False,
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,
    )
    return 0


def _http_protocol(settings: Settings) -> Any:
    """uvicorn's `http=`: h11 by name, or httptools with the same cap on a request's head."""
    if settings.http_parser == "h11":
        return "h11"
    from app.server.http_protocol import capped_httptools  # noqa: PLC0415

    return capped_httptools(settings.max_header_bytes)


def demo() -> int:
    """Start the sim on a free port, then the gateway in front of it, and say how to try it."""
    sim_port = _free_port()
    sim = subprocess.Popen(  # noqa: S603 - our own module, no shell
        [sys.executable, "-m", "sim", "--port", str(sim_port)], stdout=subprocess.DEVNULL
    )
    try:
        _wait_for(sim_port)
        # No probe runs in the demo: without this the governor would stay conservative.
        overrides: dict[str, object] = {
            "upstream_url": f"http://127.0.0.1:{sim_port}",
            "probe_stale_factor": 1.0,
            **_demo_posts(),
        }
        settings = _settings(**overrides)
        if settings is None:
            return 2
        url = f"http://{settings.host}:{settings.port}"
        body = '{"input": "Hello!"}'
        print(f"llmgw demo: gateway on {url}, simulated model server on port {sim_port}")
        print(f"open {url}/ for the chat widget, or try:")
        print(f"curl -N {url}/api/chat -H 'Content-Type: application/json' -d '{body}'")
        if "posts_index" in overrides:
            print("its sample posts are indexed: ask 'What did you write about Tailscale?'")
        sys.stdout.flush()
        # uvicorn shuts down on SIGTERM, then raises it again: without a handler of ours that
        # would kill this process before `finally`, and leave the sim running.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return serve(**overrides)
    finally:
        sim.terminate()
        try:
            sim.wait(timeout=5)
        except subprocess.TimeoutExpired:  # never leave the sim running behind the demo
            sim.kill()
            sim.wait()


def _demo_posts() -> dict[str, object]:
    """Without an index of the owner's own, the demo indexes its sample posts (app/posts/demo)
    into a file of its own, so the model can read them (LLMGW_RAG)."""
    if "LLMGW_POSTS_INDEX" in os.environ or Path("posts.sqlite3").exists():
        return {}
    index = Path(tempfile.mkdtemp(prefix="llmgw-demo-")) / "posts.sqlite3"
    environment = {name: v for name, v in os.environ.items() if not name.startswith("LLMGW_")}
    environment |= {"LLMGW_POSTS_INDEX": str(index), "LLMGW_POSTS_SHARE": "file"}
    done = subprocess.run(  # noqa: S603 - our own module, no shell
        [sys.executable, "-m", "app", "posts", "index", str(DEMO_POSTS)],
        env=environment,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        return {}
    return {"posts_index": str(index), "posts_share": "file"}


def _exit_on_sigterm(signum: int, frame: object) -> None:  # noqa: ARG001 - a signal handler
    raise SystemExit(128 + signum)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"llmgw demo: the simulated model server did not start on port {port}")
