"""The doctor's report: one row per hop, wrapped, and a closing verdict.

With several hosts each host's hops carry its name ("mac1 tunnel"), the hop column widens to
fit them, and the verdict names each host that failed and each that passed, so that one host
down does not hide that the others are fine.
"""

from __future__ import annotations

import textwrap

from app.doctor.findings import HopReport, Result

HOP_WIDTH, RESULT_WIDTH, DETAIL_WIDTH, ADVICE_WIDTH = 14, 9, 58, 60


def render(reports: list[HopReport]) -> str:
    """The table (hop, result, detail, what to do) and a closing verdict."""
    width = max([HOP_WIDTH - 2, *(len(report.label) for report in reports)]) + 2
    lines = [row(width, "hop", "result", "detail", "what to do")]
    lines += [row(width, r.label, r.result, r.detail, r.advice) for r in reports]
    return "\n".join([*lines, "", *verdict(reports)]) + "\n"


def row(width: int, hop: str, result: str, detail: str, advice: str) -> str:
    """One row; long details and advice wrap onto indented continuation lines."""
    details = wrapped(detail, DETAIL_WIDTH - 2)
    advices = wrapped(advice, ADVICE_WIDTH)
    height = max(len(details), len(advices), 1)
    details += [""] * (height - len(details))
    advices += [""] * (height - len(advices))
    lines = []
    for index in range(height):
        first = index == 0
        left = (hop if first else "").ljust(width) + (result if first else "").ljust(RESULT_WIDTH)
        lines.append((left + details[index].ljust(DETAIL_WIDTH) + advices[index]).rstrip())
    return "\n".join(lines)


def wrapped(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)


def verdict(reports: list[HopReport]) -> list[str]:
    """Each failure to fix first (the shared hops' and each host's), then each named host that
    passed; with one host, one line as before hosts existed."""
    groups: dict[str, list[HopReport]] = {}
    for report in reports:
        groups.setdefault(report.host, []).append(report)
    failures = [failed for group in groups.values() if (failed := first_failure(group))]
    lines = [
        f"FAIL at {failed.label}: fix that hop first, then run `llmgw doctor` again."
        for failed in failures
    ]
    if not failures:
        return [passed(reports)]
    for host, group in groups.items():
        ran = any(report.result is not Result.SKIPPED for report in group)
        if host and ran and first_failure(group) is None:
            lines.append(f"{host}: {passed(group)}")
    return lines


def first_failure(reports: list[HopReport]) -> HopReport | None:
    return next((report for report in reports if report.result is Result.FAIL), None)


def passed(reports: list[HopReport]) -> str:
    warnings = sum(report.result is Result.WARN for report in reports)
    skipped = sum(report.result is Result.SKIPPED for report in reports)
    suffix = f", {warnings} with a warning" if warnings else ""
    suffix += f", {skipped} left out" if skipped else ""
    return f"all {len(reports) - skipped} hops passed{suffix}."
