"""Options of `python -m sim`, grouped; `--lmstudio` turns on the realistic set as defaults."""

from __future__ import annotations

import argparse
from dataclasses import fields

from sim.config import BadToolCalls, Engine, Overflow, SimConfig

# What `--lmstudio` means; any option given explicitly still wins.
LMSTUDIO_PRESET: dict[str, object] = {
    "jit": True,
    "load_seconds": 2.0,
    "engine": Engine.MLX.value,
    "unknown_path_200": True,
    "prefill_survives_cancel": True,
}


def build_parser() -> argparse.ArgumentParser:
    """The options of `python -m sim`; defaults come from `SimConfig`."""
    parser = argparse.ArgumentParser(
        prog="llmgw sim",
        description="A simulated LM Studio server: well-behaved by default; the LM Studio "
        "options below make it as unkind as the real one, behaviour by behaviour.",
    )
    parser.add_argument(
        "--lmstudio",
        action="store_true",
        help="realistic preset: --jit --load-seconds 2 --engine mlx --unknown-path-200 "
        "--prefill-survives-cancel (explicit options override it)",
    )
    _basics(parser.add_argument_group("server and model"))
    _capacity(parser.add_argument_group("capacity"))
    _models(parser.add_argument_group("LM Studio: models, JIT loading and idle TTL"))
    _conversation(parser.add_argument_group("LM Studio: context and answers"))
    _wire(parser.add_argument_group("LM Studio: wire quirks"))
    _tools(parser.add_argument_group("LM Studio: function tools (docs 3_openai-compat/tools.mdx)"))
    _power(parser.add_argument_group("simulated power draw (GET /_sim/stats)"))
    parser.set_defaults(**{f.name: getattr(SimConfig(), f.name) for f in fields(SimConfig)})
    return parser


def parse(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Parse once; with `--lmstudio`, parse again over the preset's defaults."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.lmstudio:
        parser.set_defaults(**LMSTUDIO_PRESET)
        args = parser.parse_args(argv)
    return parser, args


def config_from(args: argparse.Namespace) -> SimConfig:
    """A `SimConfig` from parsed options; raises ValueError on values out of range."""
    values = {f.name: getattr(args, f.name) for f in fields(SimConfig)}
    values["engine"] = Engine(values["engine"])
    values["overflow"] = Overflow(values["overflow"])
    values["bad_tool_calls"] = BadToolCalls(values["bad_tool_calls"])
    return SimConfig(**values)


def _basics(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--host")
    group.add_argument("--port", type=int)
    group.add_argument("--model", help="the LLM's key")
    group.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on every API")
    group.add_argument("--no-model", action="store_true", help="start in the no_model fault")
    group.add_argument(
        "--error-share", type=float, help="share of requests failing in 'error' mode"
    )
    group.add_argument("--seed", type=int)


def _capacity(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--engine",
        choices=[engine.value for engine in Engine],
        help="sim: --slots at once, --queue may wait, more get 503 (not LM Studio); "
        "mlx: one prediction at a time, the rest queue (docs 0_app/5_advanced/"
        "parallel-requests.md); llama.cpp: --slots at once, the rest queue",
    )
    group.add_argument("--slots", type=int, help="parallel generations (sim, llama.cpp)")
    group.add_argument("--queue", type=int, help="requests that may wait (sim engine only)")
    group.add_argument("--decode-rate", type=float, help="tokens/s of one slot when alone")
    group.add_argument("--prefill-rate", type=float, help="input tokens/s")
    group.add_argument(
        "--output-tokens", type=int, help="answer tokens when the request sets no limit"
    )
    group.add_argument(
        "--reasoning-tokens", type=int, help="reasoning tokens when reasoning is asked for"
    )
    group.add_argument(
        "--prefill-survives-cancel",
        action="store_true",
        help="a request cancelled during prompt processing holds its slot until the prefill "
        "ends (lmstudio-bug-tracker#597, #108)",
    )


def _models(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--jit",
        action="store_true",
        help="the model starts downloaded but not loaded; the first request loads it",
    )
    group.add_argument("--load-seconds", type=float, help="how long a load takes")
    group.add_argument(
        "--idle-ttl", type=float, help="seconds a JIT-loaded model may idle (LM Studio: 3600)"
    )
    group.add_argument(
        "--duplicate-jit-loads",
        action="store_true",
        help="concurrent JIT requests each load a copy (lmstudio-bug-tracker#1751)",
    )
    group.add_argument("--embedding-model", action="store_true", help="list an embedding model too")


def _conversation(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--context-length", type=int, help="loaded context; default: no overflow check"
    )
    group.add_argument(
        "--overflow",
        choices=[form.value for form in Overflow],
        help="how an overflowing conversation is answered: 400 (#237, #546), a 200 carrying "
        "the error (#2322), or an error mid-generation (#1251)",
    )
    group.add_argument(
        "--incomplete-at-limit",
        action="store_true",
        help="an answer cut by max_output_tokens ends with response.incomplete",
    )
    group.add_argument(
        "--reasoning-eats-budget",
        action="store_true",
        help="a cut reasoning answer spends the whole budget on reasoning: no text",
    )
    group.add_argument(
        "--reasoning-done-only",
        action="store_true",
        help="reasoning comes as one response.reasoning_text.done inside its item's events, "
        "no deltas (pi#4191)",
    )


def _wire(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--bare-error-frames",
        action="store_true",
        help="error frames in streams carry no 'event:' line",
    )
    group.add_argument(
        "--unknown-path-200",
        action="store_true",
        help="unknown paths get 200 {'error': 'Unexpected endpoint or method. ...'} (#618)",
    )
    group.add_argument(
        "--no-responses-api",
        action="store_true",
        help="before LM Studio 0.3.29: no /v1/responses (it gets the unknown-path answer)",
    )
    group.add_argument(
        "--no-rest-v1",
        action="store_true",
        help="before LM Studio 0.4.0: no native /api/v1 (it gets the unknown-path answer)",
    )


def _tools(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--not-trained-for-tool-use",
        dest="trained_for_tool_use",
        action="store_false",
        help="the LLM lists trained_for_tool_use false, and its calls come out as text LM "
        "Studio cannot parse",
    )
    group.add_argument(
        "--tool-trigger",
        metavar="TEXT",
        help="the model calls the first offered function when the last user message contains "
        "TEXT, any case (default '?': a question)",
    )
    group.add_argument(
        "--bad-tool-calls",
        choices=[mode.value for mode in BadToolCalls],
        help="spoil every call: arguments not JSON, a function nobody offered, over-long "
        "arguments, or a call written as text",
    )
    group.add_argument(
        "--tool-call-every-turn",
        action="store_true",
        help="a follow-up carrying a function_call_output calls the tool again",
    )
    group.add_argument(
        "--long-tool-arguments",
        type=int,
        metavar="CHARS",
        help="length of the arguments in --bad-tool-calls long_arguments",
    )


def _power(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--idle-watts", type=float, help="the host's draw with nothing running")
    group.add_argument(
        "--watts-per-stream",
        type=float,
        help="added draw of each generation holding a slot (a heavier model: more)",
    )
