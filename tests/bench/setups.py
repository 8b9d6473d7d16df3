"""The sims and gateway settings more than one measurement uses, so that what they compare
(the public route against the keyed one, say) runs against the same setup."""

from __future__ import annotations

import os

SAMPLES = int(os.environ.get("LLMGW_BENCH_SAMPLES", "400"))
# Slots for every stream (no queueing in the sim), tokens some 2 ms apart when alone.
LATENCY_SIM = ("--slots", "128", "--queue", "512", "--decode-rate", "500", "--output-tokens", "8")
GATEWAY = {"max_output_tokens": 8, "reasoning_effort": "none", "probe_stale_factor": 1}
OPEN = {"global_limit": 10**9, "visitor_limit": 10**9, "max_inflight": 10**6}
