"""Several `llmgw doctor` runs in one process, one after the other, so Python's imports are paid
once: each run sees only its own LLMGW_* variables and options, and its output is captured as
the terminal would show it. Cases come as JSON on stdin; results go as JSON to stdout."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

from app.doctor.run import main


def run_case(base: dict[str, str], case: dict[str, object]) -> dict[str, object]:
    """One run of `llmgw doctor` with this environment and these options."""
    env = case["env"]
    options = case["options"]
    assert isinstance(env, dict)
    assert isinstance(options, list)
    os.environ.clear()
    os.environ.update(base | env)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(options)
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


if __name__ == "__main__":
    cases = json.load(sys.stdin)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LLMGW_", "SSL_CERT"))}
    results = {name: run_case(base, case) for name, case in cases.items()}
    sys.stdout.write(json.dumps(results))
