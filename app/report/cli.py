"""`llmgw report energy [--since 7d] [--gateway URL] [--json]`: the owner's energy report."""

from __future__ import annotations

import argparse
import json
import sys

from app.report.energy import (
    Prices,
    ReportError,
    read_gateway,
    read_prometheus,
    since_seconds,
)
from app.report.energy_table import rows, table
from app.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    """Print the report; 2 on a bad option or configuration, 1 when the metrics are unreadable."""
    parser = argparse.ArgumentParser(prog="llmgw report", description=__doc__)
    reports = parser.add_subparsers(dest="report", required=True)
    energy = reports.add_parser("energy", help="energy per answer, per model, and its cost")
    energy.add_argument("--since", default="7d", help="the period (Prometheus only): 7d, 24h")
    energy.add_argument(
        "--gateway", help="the gateway's URL when no Prometheus is set (default: LLMGW_HOST:PORT)"
    )
    energy.add_argument("--json", action="store_true", help="the rows as JSON")
    args = parser.parse_args(argv)
    try:
        seconds = since_seconds(args.since)
        settings = load_settings()
    except (ValueError, SettingsError) as exc:
        print(f"llmgw report: {exc}", file=sys.stderr)
        return 2
    prices = Prices(
        settings.energy_price_per_kwh,
        settings.energy_currency,
        settings.fallback_price_input_per_mtok,
        settings.fallback_price_output_per_mtok,
    )
    try:
        if settings.prometheus_url is not None:
            usages = read_prometheus(settings.prometheus_url, seconds)
            heading = (
                f"Energy per answer, last {args.since} (Prometheus at {settings.prometheus_url})"
            )
        else:
            host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
            url = args.gateway or f"http://{host}:{settings.port}"
            usages = read_gateway(url)
            heading = (
                f"Energy per answer since the gateway at {url} started (no LLMGW_PROMETHEUS_URL)"
            )
    except ReportError as exc:
        print(f"llmgw report: {exc}", file=sys.stderr)
        return 1
    found = list(usages.values())
    if args.json:
        print(json.dumps({"heading": heading, "models": rows(found, prices)}, indent=2))
    elif not found:
        print(f"{heading}\n\nNo answers in this period.")
    else:
        print(table(found, prices, heading))
    return 0
