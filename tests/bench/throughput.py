"""Requests per second from wrk (on the load core), with the server's own CPU time per request."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from processes import LOAD_CPU, pinned
from usage import CpuClock

if TYPE_CHECKING:
    from processes import Server

SECONDS = int(os.environ.get("LLMGW_BENCH_SECONDS", "8"))
CONNECTIONS = 32


# Every request with a thumbmark of its own: the visitor is new to the gateway's memory each
# time (its address window is spent all the same), so every refusal is decided by Redis.
ROTATING_THUMBMARK = """
counter = 0
request = function()
  counter = counter + 1
  local headers = {["Content-Type"] = "application/json", ["X-Thumbmark-Id"] = "t" .. counter}
  return wrk.format(nil, nil, headers, nil)
end
"""


def wrk(
    url: str, body: bytes | None = None, seconds: int = SECONDS, *, rotate_thumbmark: bool = False
) -> dict[str, float]:
    """wrk -t1 -c32 against one URL (POST with `body`, else GET): rate, total, non-2xx."""
    script = ""
    if body is not None:
        script = f"wrk.method = \"POST\"\nwrk.body = '{body.decode()}'\n"
        script += 'wrk.headers["Content-Type"] = "application/json"\n'
    if rotate_thumbmark:
        script += ROTATING_THUMBMARK
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", handle.name, url]
    try:
        run = subprocess.run(pinned(command, LOAD_CPU), capture_output=True, text=True, check=True)
    finally:
        Path(handle.name).unlink()
    output = run.stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": rps, "total": total, "non_2xx": int(refused.group(1)) if refused else 0}


def wrk_with_cpu(
    server: Server, path: str, body: bytes | None = None, *, rotate_thumbmark: bool = False
) -> dict[str, float]:
    """wrk against `server`, and the CPU the server spent per request while it ran."""
    with CpuClock(server.pid).measure() as spent:
        result = wrk(f"{server.url}{path}", body, rotate_thumbmark=rotate_thumbmark)
    result["cpu_ms_per_request"] = spent.seconds / max(1, result["total"]) * 1000
    result["busy_share"] = spent.busy_share
    # What one fully busy core would serve at this cost per request.
    result["rps_per_core"] = 1000 / result["cpu_ms_per_request"] if spent.seconds else 0.0
    return result
