"""The doctor's report: one row per hop, wrapped, and a closing verdict."""

from __future__ import annotations

import textwrap

from app.doctor.findings import HopReport, Result

HOP_WIDTH, RESULT_WIDTH, DETAIL_WIDTH, ADVICE_WIDTH = 14, 9, 58, 60


def render(reports: list[HopReport]) -> str:
    """The table (hop, result, detail, what to do) and a closing verdict."""
    lines = [row("hop", "result", "detail", "what to do")]
    lines += [row(r.hop, r.result, r.detail, r.advice) for r in reports]
    return "\n".join([*lines, "", verdict(reports)]) + "\n"


def row(hop: str, result: str, detail: str, advice: str) -> str:
    """One row; long details and advice wrap onto indented continuation lines."""
    details = wrapped(detail, DETAIL_WIDTH - 2)
    advices = wrapped(advice, ADVICE_WIDTH)
    height = max(len(details), len(advices), 1)
    details += [""] * (height - len(details))
    advices += [""] * (height - len(advices))
    lines = []
    for index in range(height):
        first = index == 0
        left = (hop if first else "").ljust(HOP_WIDTH) + (result if first else "").ljust(
            RESULT_WIDTH
        )
        lines.append((left + details[index].ljust(DETAIL_WIDTH) + advices[index]).rstrip())
    return "\n".join(lines)


def wrapped(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


def verdict(reports: list[HopReport]) -> str:
    failed = next((report for report in reports if report.result is Result.FAIL), None)
    if failed is not None:
        return f"FAIL at {failed.hop}: fix that hop first, then run `llmgw doctor` again."
    warnings = sum(report.result is Result.WARN for report in reports)
    skipped = sum(report.result is Result.SKIPPED for report in reports)
    suffix = f", {warnings} with a warning" if warnings else ""
    suffix += f", {skipped} left out" if skipped else ""
    return f"all {len(reports) - skipped} hops passed{suffix}."
