"""Stand-ins for a broken model side: a port that never answers, a proxy that answers 502, and a
server whose answer a test scripts byte by byte."""

from __future__ import annotations

import socket
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

from support import serving

if TYPE_CHECKING:
    from collections.abc import Iterator


@contextmanager
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections, reads, and never says a word."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


@contextmanager
def answering_server(
    status: int,
    headers: dict[str, str],
    body: bytes = b"",
    seen: list[dict[str, str]] | None = None,
) -> Iterator[str]:
    """An HTTP server that answers every request with this status, these headers and body:
    a tunnel proxy whose backend is gone, or an nginx whose upstream is."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            if seen is not None:
                seen.append(dict(self.headers.items()))
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response_only(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815 - the names http.server dispatches to

        def log_message(self, *_: object) -> None:
            return

    with serving(Handler) as url:
        yield url


@dataclass
class ScriptedServer:
    """A model side that answers every request with the bytes a test last set: any status and
    framing, a body cut short, garbage, or nothing at all (a hang-up). One answer per
    connection, which it then closes."""

    url: str
    answer: bytes = b""
    requests: int = 0


@contextmanager
def scripted_server() -> Iterator[ScriptedServer]:
    """A `ScriptedServer` on a loopback port, until the block ends."""
    listener = socket.create_server(("127.0.0.1", 0))
    server = ScriptedServer(f"http://127.0.0.1:{listener.getsockname()[1]}")
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                _read_request(conn)
                server.requests += 1
                conn.sendall(server.answer)
            except OSError:
                return

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn = listener.accept()[0]
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join()
        listener.close()


def _read_request(conn: socket.socket) -> None:
    """Read one request: its head, then as much body as its Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a whole request head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next((int(line[15:]) for line in lines if line.startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the whole request body")
        body += chunk
