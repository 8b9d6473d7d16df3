"""The network path to the model host: DNS, the tunnel's TCP port, TLS."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from app.doctor.findings import (
    CERT_WARN_DAYS,
    CONNECT_TIMEOUT,
    TUNNEL_ADVICE,
    Clients,
    Finding,
    HopFailed,
    elapsed_ms,
    ok,
    warn,
)
from app.doctor.redaction import reason

if TYPE_CHECKING:
    from app.settings import Settings


def host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


async def check_dns(settings: Settings, _: Clients) -> Finding:
    """The upstream host name resolves from here."""
    host, port = host_and_port(settings.upstream_url)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return ok(f"{host} is an address, nothing to resolve")
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            found = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
    except (OSError, TimeoutError) as exc:
        raise HopFailed(
            f"{host} does not resolve ({reason(exc)})",
            "check the host name in LLMGW_UPSTREAM_URL; a *.ts.net name resolves publicly only "
            "while Funnel is on (`tailscale funnel status` on the model host)",
        ) from None
    addresses = sorted({str(entry[4][0]) for entry in found})
    return ok(f"{host} → {', '.join(addresses[:3])}")


async def check_tunnel(settings: Settings, _: Clients) -> Finding:
    """Something accepts a TCP connection at the upstream host and port."""
    host, port = host_and_port(settings.upstream_url)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        raise HopFailed(
            f"no answer from {host}:{port} in {CONNECT_TIMEOUT:g} s", TUNNEL_ADVICE
        ) from None
    except OSError as exc:
        raise HopFailed(f"cannot connect to {host}:{port} ({reason(exc)})", TUNNEL_ADVICE) from None
    writer.close()
    return ok(f"connected to {host}:{port} in {elapsed_ms(started)} ms")


async def check_tls(settings: Settings, _: Clients) -> Finding:
    """The TLS handshake succeeds with the certificates the gateway trusts; days to expiry."""
    host, port = host_and_port(settings.upstream_url)
    context = httpx.create_ssl_context()  # what the gateway's client trusts, SSL_CERT_FILE too
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _reader, writer = await asyncio.open_connection(host, port, ssl=context)
    except ssl.SSLCertVerificationError as exc:
        raise HopFailed(
            f"certificate refused: {exc.verify_message}",
            "use the Funnel's https://<node>.<tailnet>.ts.net name (its certificate is issued for "
            "it); a custom CA goes in SSL_CERT_FILE",
        ) from None
    except (OSError, TimeoutError) as exc:
        raise HopFailed(f"TLS handshake failed ({reason(exc)})", TUNNEL_ADVICE) from None
    certificate: dict[str, Any] = writer.get_extra_info("peercert") or {}
    protocol = writer.get_extra_info("ssl_object").version()
    writer.close()
    days = int((ssl.cert_time_to_seconds(certificate["notAfter"]) - time.time()) // 86_400)
    detail = f"{protocol}, certificate valid for {days} more days"
    if days < CERT_WARN_DAYS:
        return warn(detail, "renewal is late: `tailscale cert` / Funnel renews 30 days ahead")
    return ok(detail)
