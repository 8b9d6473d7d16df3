"""infra/gateway/Dockerfile without a Docker engine: python:3.11-slim, a non-root user, a
HEALTHCHECK that really tells a live gateway from a dead one, `llmgw serve` on all interfaces,
the lock installed by the pinned uv, and a build context holding exactly what that needs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from gateway_files import DOCKERFILE, ROOT, Instruction, dockerfile_instructions, final_stage
from gateway_server import running_gateway
from support import free_port


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


def build_stage() -> list[Instruction]:
    """The instructions of the first stage, which installs the gateway."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, step in enumerate(instructions) if step.keyword == "FROM")
    return instructions[:last_from]


def build_commands() -> tuple[list[str], list[str]]:
    """The build stage's two RUNs: uv installed by pip, then the sync (mount options left out)."""
    install, sync = keyword(build_stage(), "RUN")
    return install.split(), [word for word in sync.split() if not word.startswith("--mount=")]


def test_the_image_installs_the_lock_with_the_pinned_uv() -> None:
    """pip installs uv from requirements-uv.txt, hashes required; uv installs uv.lock, refused
    when stale, without the dev tools and not editable; the image runs that environment."""
    install, sync = build_commands()
    assert install[:3] == ["python", "-m", "pip"]
    assert {"--require-hashes", "--no-deps", "requirements-uv.txt"} <= set(install)
    assert sync == ["uv", "sync", "--locked", "--no-dev", "--no-editable"]
    environment = dict(re.findall(r"(\w+)=(\S+)", " ".join(keyword(build_stage(), "ENV"))))
    copied = keyword(final_stage(), "COPY")
    assert copied == [f"--from=build {environment['UV_PROJECT_ENVIRONMENT']} /opt/llmgw"]


@pytest.mark.slow
def test_the_build_stage_works_on_exactly_its_build_context(tmp_path: Path) -> None:
    """The build stage's sync, run here on the files it copies and nothing else, installs the
    lock's gateway: `llmgw --help` runs, and no dev tool is there."""
    source = tmp_path / "src"
    for step in build_stage():
        if step.keyword == "COPY":
            *sources, target = step.arguments.split()
            for name in sources:  # as Docker does: into a target/ folder, or as the target
                into = Path(name).name if target.endswith("/") else ""
                copy_into(ROOT / name, source / target / into)
    environment = dict(re.findall(r"(\w+)=(\S+)", " ".join(keyword(build_stage(), "ENV"))))
    environment["UV_PROJECT_ENVIRONMENT"] = str(tmp_path / "llmgw")
    uv, *arguments = build_commands()[1]
    done = subprocess.run(
        [str(ROOT / ".tools" / "bin" / uv), *arguments],
        cwd=source,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    venv = tmp_path / "llmgw" / "bin"
    subprocess.run([venv / "llmgw", "--help"], capture_output=True, check=True, timeout=30)
    assert not (venv / "pytest").exists()


def copy_into(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
