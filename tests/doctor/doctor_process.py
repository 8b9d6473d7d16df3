"""Run `llmgw doctor` as an operator does, a real process, and read its table back into rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING

from support import serving

from app.doctor.table import DETAIL_WIDTH, RESULT_WIDTH

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence

    from sim_process import SimHandle

RUN_TIMEOUT = 60
BATCH = Path(__file__).with_name("doctor_batch.py")


@dataclass
class Row:
    result: str
    detail: str = ""
    advice: str = ""


@dataclass
class Diagnosis:
    """What `llmgw doctor` printed, its exit code, and its table read back into rows."""

    code: int
    output: str
    rows: dict[str, Row]

    def first_failure(self) -> str:
        return next(hop for hop, row in self.rows.items() if row.result == "FAIL")

    def results(self) -> dict[str, str]:
        return {hop: row.result for hop, row in self.rows.items()}


@dataclass(frozen=True)
class Run:
    """One doctor run: its LLMGW_* settings, extra environment, options, and the secrets it
    must never print."""

    settings: Mapping[str, str]
    secrets: Sequence[str] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    options: Sequence[str] = ()


def parse(output: str) -> dict[str, Row]:
    """The table's rows, by hop ("mac1 tunnel" for a named host's); a wrapped cell continues on
    lines that start with spaces. The hop column is as wide as the header says."""
    lines = output.splitlines()
    if not lines:
        return {}
    result_at = lines[0].index("result")
    detail_at, advice_at = result_at + RESULT_WIDTH, result_at + RESULT_WIDTH + DETAIL_WIDTH
    rows: dict[str, Row] = {}
    row = Row("")
    for line in lines[1:]:
        if not line.strip():
            break
        if not line.startswith(" "):
            row = rows.setdefault(line[:result_at].strip(), Row(line[result_at:detail_at].strip()))
        row.detail = f"{row.detail} {line[detail_at:advice_at].strip()}".strip()
        row.advice = f"{row.advice} {line[advice_at:].strip()}".strip()
    return rows


def environment(run: Run) -> dict[str, str]:
    """The run's own variables: its LLMGW_* settings and extra environment."""
    settings = {f"LLMGW_{name.upper()}": value for name, value in run.settings.items()}
    return settings | dict(run.extra_env)


def diagnosis(run: Run, code: int, stdout: str, stderr: str) -> Diagnosis:
    """The run's result, after checking that no secret of it was printed."""
    output = stdout + stderr
    for secret in run.secrets:
        assert secret not in output
    return Diagnosis(code, output, parse(stdout))


def doctor(
    *secret_values: str,
    extra_env: dict[str, str] | None = None,
    options: Sequence[str] = (),
    **settings: str,
) -> Diagnosis:
    """Run `python -m app doctor` with only these LLMGW_* settings; no secret may be printed."""
    run = Run(settings, secret_values, extra_env or {}, options)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMGW_", "SSL_CERT"))}
    done = subprocess.run(
        [sys.executable, "-m", "app", "doctor", *run.options],
        env=env | environment(run),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    return diagnosis(run, done.returncode, done.stdout, done.stderr)


def doctors(runs: Mapping[str, Run], workers: int = 2) -> dict[str, Diagnosis]:
    """Many doctor runs, shared out among a few processes that each import the doctor once and
    run theirs one after the other (tests/doctor/doctor_batch.py)."""
    names = list(runs)
    shares = [names[index::workers] for index in range(workers)]
    processes = [_batch([(name, runs[name]) for name in share]) for share in shares if share]
    found: dict[str, Diagnosis] = {}
    for process in processes:
        assert process.stdout is not None
        stdout = process.stdout.read()
        assert process.wait(timeout=RUN_TIMEOUT) == 0, stdout
        process.stdout.close()
        for name, result in json.loads(stdout).items():
            found[name] = diagnosis(runs[name], result["code"], result["stdout"], result["stderr"])
    return found


def _batch(cases: list[tuple[str, Run]]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, str(BATCH)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    batch = {name: {"env": environment(run), "options": list(run.options)} for name, run in cases}
    process.stdin.write(json.dumps(batch))
    process.stdin.close()
    return process


def assert_fails_first_at(diagnosis: Diagnosis, hop: str, *advice: str) -> Row:
    """Exit 1, this hop is the first FAIL, everything before passed and everything after is
    skipped; its advice says these things."""
    assert diagnosis.code == 1, diagnosis.output
    assert diagnosis.first_failure() == hop, diagnosis.output
    hops = list(diagnosis.rows)
    after = hops[hops.index(hop) + 1 :]
    assert all(diagnosis.rows[name].result == "skipped" for name in after), diagnosis.output
    before = hops[: hops.index(hop)]
    assert all(diagnosis.rows[name].result in ("ok", "warn") for name in before)
    row = diagnosis.rows[hop]
    for words in advice:
        assert words in row.advice, diagnosis.output
    return row


Route = tuple[int, dict[str, str], bytes]


@contextmanager
def routed_server(routes: Mapping[tuple[str, str], Route]) -> Iterator[str]:
    """A model server that is not LM Studio: each (method, path) gets its status, headers and
    body; any other a bare 404, as most servers answer."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, body = routes.get((self.command, self.path), (404, {}, b""))
            self.send_response_only(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815 - the names http.server dispatches to

        def log_message(self, *_: object) -> None:
            return

    with serving(Handler) as url:
        yield url


@dataclass
class Scene:
    """Every case's diagnosis, and the sims they ran against (still running)."""

    diagnoses: dict[str, Diagnosis]
    sims: dict[str, SimHandle]

    def __getitem__(self, case: str) -> Diagnosis:
        return self.diagnoses[case]
