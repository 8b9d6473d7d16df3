"""The energy report's text: a table by model, lightest per answer first, and a closing line on
whether a lighter model would save energy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.report.energy import JOULES_PER_WH

if TYPE_CHECKING:
    from collections.abc import Sequence

    from app.report.energy import Prices, Usage

NOT_MEASURED = "-"
NO_SOURCE = (
    "No energy measured: no model host's probe has a power source (see infra/probe/README.md,"
    " 'Power and energy')."
)


def ordered(usages: Sequence[Usage]) -> list[Usage]:
    """Measured models, least energy per answer first, then the others by answers."""
    measured = sorted((u for u in usages if u.measured), key=lambda u: u.joules_per_answer or 0)
    others = sorted((u for u in usages if not u.measured), key=lambda u: -u.answers)
    return [*measured, *others]


def rows(usages: Sequence[Usage], prices: Prices) -> list[dict[str, Any]]:
    """One row per model, as numbers (None: not measured), for the table or `--json`."""
    result = []
    for usage in ordered(usages):
        per_answer = usage.joules_per_answer
        row: dict[str, Any] = {
            "model": usage.model,
            "answers": round(usage.answers),
            "tokens_per_second": usage.tokens_per_second,
            "ttft_p50_seconds": usage.ttft_p50,
            "ttft_p95_seconds": usage.ttft_p95,
            "joules_per_answer": per_answer,
            "marginal_joules_per_answer": (
                usage.marginal_joules / usage.energy_answers if usage.measured else None
            ),
            "wh_per_1000_answers": None if per_answer is None else per_answer / JOULES_PER_WH * 1e3,
            "joules_per_1000_tokens": usage.joules_per_1k_tokens,
            "energy_cost": usage.energy_cost(prices.per_kwh),
            "fallback_cost": prices.fallback_cost(usage) if prices.fallback else None,
            "currency": prices.currency,
        }
        result.append(row)
    return result


def table(usages: Sequence[Usage], prices: Prices, heading: str) -> str:
    """The report as text: heading, table, the closing comparison."""
    lines = [heading, ""]
    header = ["model", "answers", "tok/s", "TTFT p50", "TTFT p95", "J/answer", "Wh/1k ans"]
    header += ["J/1k tok", f"energy {prices.currency}"]
    if prices.fallback:
        header.append(f"fallback {prices.currency}")
    body = [header]
    for row in rows(usages, prices):
        cells = [row["model"], str(row["answers"]), _number(row["tokens_per_second"], 1)]
        cells += [_seconds(row["ttft_p50_seconds"]), _seconds(row["ttft_p95_seconds"])]
        cells += [_number(row["joules_per_answer"], 1), _number(row["wh_per_1000_answers"], 2)]
        cells += [_number(row["joules_per_1000_tokens"], 0), _money(row["energy_cost"])]
        if prices.fallback:
            cells.append(_money(row["fallback_cost"]))
        body.append(cells)
    widths = [max(len(r[i]) for r in body) for i in range(len(header))]
    for cells in body:
        first = cells[0].ljust(widths[0])
        lines.append(
            "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])
        )
    lines += ["", verdict(usages)]
    return "\n".join(lines)


def verdict(usages: Sequence[Usage]) -> str:
    """Would a lighter model save energy? From the measured models' own figures."""
    measured = [u for u in ordered(usages) if u.measured]
    if not measured:
        return NO_SOURCE
    if len(measured) == 1:
        only = measured[0]
        return (
            f"Only {only.model} has measured energy in this period"
            f" ({only.joules_per_answer:.1f} J an answer): serve a lighter model for a while"
            " to compare."
        )
    light, heavy = measured[0], measured[-1]
    per_answer_light, per_answer_heavy = light.joules_per_answer or 0, heavy.joules_per_answer or 0
    saving = 1 - per_answer_light / per_answer_heavy if per_answer_heavy > 0 else 0.0
    text = (
        f"A lighter model saves energy: {light.model} used {per_answer_light:.1f} J an answer,"
        f" {heavy.model} {per_answer_heavy:.1f} J; {heavy.model}'s answers on {light.model}"
        f" would have used about {saving:.0%} less."
    )
    tokens_light, tokens_heavy = light.joules_per_1k_tokens, heavy.joules_per_1k_tokens
    if tokens_light and tokens_heavy and tokens_light > tokens_heavy:
        text += (
            f" Per 1,000 tokens, though, {light.model} used more ({tokens_light:.0f} J against"
            f" {tokens_heavy:.0f} J): its answers are shorter, not cheaper."
        )
    return text


def _number(value: float | None, digits: int) -> str:
    return NOT_MEASURED if value is None else f"{value:,.{digits}f}"


def _seconds(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{value:.2f} s"


def _money(value: float | None) -> str:
    """Two decimals, or two significant digits below a cent (a test's few answers)."""
    if value is None:
        return NOT_MEASURED
    return f"{value:,.2f}" if value >= 0.01 or value == 0 else f"{value:.2g}"
