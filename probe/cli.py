"""The `llmgw probe` command: watch the model host and publish what it sees."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    """Entry point of `llmgw probe`; the agent itself is still being built."""
    parser = argparse.ArgumentParser(prog="llmgw probe", description=__doc__)
    parser.add_argument("--once", action="store_true", help="print one snapshot as JSON and exit")
    parser.parse_args(argv)
    return 0
