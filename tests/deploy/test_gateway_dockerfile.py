"""infra/gateway/Dockerfile without a Docker engine: python:3.11-slim, a non-root user, a
HEALTHCHECK that really tells a live gateway from a dead one, `llmgw serve` on all interfaces,
and a build context holding exactly what the wheel is built from."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from typing import TYPE_CHECKING

from gateway_files import DOCKERFILE, ROOT, Instruction, dockerfile_instructions, final_stage
from gateway_server import running_gateway
from support import free_port

if TYPE_CHECKING:
    import pytest


def keyword(steps: list[Instruction], name: str) -> list[str]:
    return [step.arguments for step in steps if step.keyword == name]


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form CMD (or HEALTHCHECK's CMD)."""
    command: list[str] = json.loads(arguments)
    return command


def healthcheck_command() -> list[str]:
    (healthcheck,) = keyword(final_stage(), "HEALTHCHECK")
    return exec_form(healthcheck.split(" CMD ", 1)[1])


def test_every_stage_is_python_311_slim() -> None:
    """Both stages start from PYTHON_IMAGE, whose default is python:3.11-slim."""
    instructions = dockerfile_instructions()
    assert instructions[0] == Instruction("ARG", "PYTHON_IMAGE=python:3.11-slim")
    stages = keyword(instructions, "FROM")
    assert len(stages) == 2
    assert all(stage.split()[0] == "${PYTHON_IMAGE}" for stage in stages)


def test_the_image_runs_as_a_non_root_user_it_creates() -> None:
    """The running stage ends as USER 10001, a system user made in that stage, never root."""
    steps = final_stage()
    user = keyword(steps, "USER")[-1]
    uid, _, gid = user.partition(":")
    assert uid not in ("root", "0")
    assert gid not in ("root", "0")
    created = " ".join(keyword(steps, "RUN"))
    assert f"useradd --system --uid {uid} --gid {gid}" in created
    assert f"groupadd --system --gid {gid}" in created
    last_user = max(i for i, step in enumerate(steps) if step.keyword == "USER")
    assert not keyword(steps[last_user:], "RUN")  # nothing runs as root after the switch


def test_the_command_serves_on_all_interfaces() -> None:
    """CMD is `llmgw serve` (the console script of pyproject.toml), with LLMGW_HOST=0.0.0.0
    and the exposed port as LLMGW_PORT."""
    steps = final_stage()
    assert exec_form(keyword(steps, "CMD")[-1]) == ["llmgw", "serve"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["llmgw"] == "app.cli:main"
    environment = dict(re.findall(r"(\w+)=(\S+)", " ".join(keyword(steps, "ENV"))))
    assert environment["LLMGW_HOST"] == "0.0.0.0"
    assert keyword(steps, "EXPOSE") == [environment["LLMGW_PORT"]]


def test_the_healthcheck_needs_no_curl() -> None:
    """HEALTHCHECK runs the image's Python on /healthz: exec form, no shell, curl or wget."""
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]
    assert not {"curl", "wget", "sh"} & set(" ".join(command).replace("/", " ").split())


def test_the_healthcheck_passes_on_a_live_gateway_and_fails_on_a_dead_port(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HEALTHCHECK's exact command, run here, exits 0 against a running gateway (on its
    LLMGW_PORT) and non-zero where nothing listens."""
    _, flag, code = healthcheck_command()
    upstream = f"http://127.0.0.1:{free_port()}"
    with running_gateway(upstream_url=upstream, redis_url=redis_url) as gateway:
        port = gateway.url.rsplit(":", 1)[1]
        live = subprocess.run(
            [sys.executable, flag, code], env={"LLMGW_PORT": port}, check=False, timeout=10
        )
    dead = subprocess.run(
        [sys.executable, flag, code],
        env={"LLMGW_PORT": str(free_port())},
        capture_output=True,
        check=False,
        timeout=10,
    )
    assert live.returncode == 0
    assert dead.returncode != 0


def test_the_build_context_holds_what_the_wheel_is_built_from() -> None:
    """Every COPY source exists, the Dockerfile's ignore file lets each through, and the wheel's
    packages (pyproject.toml) are among them."""
    sources = [
        source
        for step in dockerfile_instructions()
        if step.keyword == "COPY" and not step.arguments.startswith("--")
        for source in step.arguments.split()[:-1]
    ]
    assert all((ROOT / source).exists() for source in sources), sources
    ignore = DOCKERFILE.with_name("Dockerfile.dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"  # everything out, then each source back in
    for source in sources:
        assert f"!{source}" in rules or f"!{source}/" in rules, source
    wheel = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]
    assert set(wheel["targets"]["wheel"]["packages"]) <= set(sources)
