"""Solving a visitor pass's challenge in the tests as the widget's worker does: SHA-256 of the
salt and a number, from 0 up, until one is the challenge; posted as base64 of the JSON."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any


def solve(made: dict[str, Any]) -> dict[str, Any]:
    """The widget's worker: SHA-256 of salt and number, from 0 up, until one is the challenge."""
    for number in range(made["maxNumber"] + 1):
        digest = hashlib.sha256(f"{made['salt']}{number}".encode()).hexdigest()
        if digest == made["challenge"]:
            fields = ("algorithm", "challenge", "salt", "signature")
            return {"number": number, "took": 12, **{name: made[name] for name in fields}}
    raise AssertionError("no number solves it")


def posted(solution: dict[str, Any]) -> str:
    """What the widget posts: base64 of the JSON."""
    return base64.b64encode(json.dumps(solution).encode()).decode()
