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
    Clients,
    Finding,
    HopFailed,
    elapsed_ms,
    ok,
    unreachable_advice,
    warn,
)
from app.doctor.redaction import reason

if TYPE_CHECKING:
    from app.doctor.targets import Target
    from app.settings import Settings

FUNNEL_DNS = (
    "; a *.ts.net name resolves publicly only while Funnel is on (`tailscale funnel status` on "
    "the model host)"
)


def host_and_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


async def check_dns(_: Settings, clients: Clients) -> Finding:
    """The upstream host name resolves from here."""
    target = clients.target
    host, port = host_and_port(target.url)
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
        funnel = "" if target.fallback else FUNNEL_DNS
        raise HopFailed(
            f"{host} does not resolve ({reason(exc)})",
            f"check the host name in {target.var('url')}{funnel}",
        ) from None
    addresses = sorted({str(entry[4][0]) for entry in found})
    return ok(f"{host} → {', '.join(addresses[:3])}")


async def check_tunnel(_: Settings, clients: Clients) -> Finding:
    """Something accepts a TCP connection at the upstream host and port."""
    host, port = host_and_port(clients.target.url)
    advice = unreachable_advice(clients.target)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _reader, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        raise HopFailed(f"no answer from {host}:{port} in {CONNECT_TIMEOUT:g} s", advice) from None
    except OSError as exc:
        raise HopFailed(f"cannot connect to {host}:{port} ({reason(exc)})", advice) from None
    writer.close()
    return ok(f"connected to {host}:{port} in {elapsed_ms(started)} ms")


async def check_tls(_: Settings, clients: Clients) -> Finding:
    """The TLS handshake succeeds with the certificates the gateway trusts; days to expiry."""
    host, port = host_and_port(clients.target.url)
    context = httpx.create_ssl_context()  # what the gateway's client trusts, SSL_CERT_FILE too
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _reader, writer = await asyncio.open_connection(host, port, ssl=context)
    except ssl.SSLCertVerificationError as exc:
        raise HopFailed(
            f"certificate refused: {exc.verify_message}", certificate_advice(clients.target)
        ) from None
    except (OSError, TimeoutError) as exc:
        raise HopFailed(
            f"TLS handshake failed ({reason(exc)})", unreachable_advice(clients.target)
        ) from None
    certificate: dict[str, Any] = writer.get_extra_info("peercert") or {}
    protocol = writer.get_extra_info("ssl_object").version()
    writer.close()
    days = int((ssl.cert_time_to_seconds(certificate["notAfter"]) - time.time()) // 86_400)
    detail = f"{protocol}, certificate valid for {days} more days"
    if days < CERT_WARN_DAYS:
        return warn(detail, renewal_advice(clients.target))
    return ok(detail)


def certificate_advice(target: Target) -> str:
    if target.fallback:
        return "is this machine's clock right? A custom CA goes in SSL_CERT_FILE"
    return (
        "use the Funnel's https://<node>.<tailnet>.ts.net name (its certificate is issued for "
        "it); a custom CA goes in SSL_CERT_FILE"
    )


def renewal_advice(target: Target) -> str:
    if target.fallback:
        return "the provider renews it late: tell them, before it expires"
    return "renewal is late: `tailscale cert` / Funnel renews 30 days ahead"
