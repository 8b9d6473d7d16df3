"""The wheels of `make dist` install on a bare Python by the README's own lines: the probe's with
no Litestar in it, and its `llmgw-probe` reads a model server; the gateway's `llmgw` serves."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tomllib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sim_process import SimHandle, running_sim
from support import eventually, free_port, require_binary, stop_process

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
GATEWAY_VENV = "/opt/llmgw"
PROBE_VENV = "~/.local/share/llmgw-probe"
# What the gateway needs and the model host must not get.
GATEWAY_ONLY = {"litestar", "uvicorn", "msgspec", "opentelemetry-sdk", "fakeredis", "llmgw"}


def dependencies(pyproject: Path) -> list[str]:
    project: dict[str, list[str]] = tomllib.loads(pyproject.read_text())["project"]
    return project["dependencies"]


def install_lines(venv: str) -> list[str]:
    """The README's lines that make `venv` and pip-install into it, in order."""
    lines = README.read_text().splitlines()
    return [
        line
        for line in lines
        if line == f"python3 -m venv {venv}" or line.startswith(f"{venv}/bin/pip install ")
    ]


def run_install_lines(venv: str, into: Path, dist: Path) -> None:
    """Run the README's install lines for `venv` with it at `into` and dist/ at `dist`."""
    lines = install_lines(venv)
    assert len(lines) == 3, lines  # the venv, the locked dependencies, the wheel
    for line in lines:
        command = shlex.split(line.replace(venv, str(into)).replace(" dist/", f" {dist}/"))
        done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"


def installed(venv: Path) -> set[str]:
    """The normalised names of the distributions in `venv`."""
    code = "import importlib.metadata as m; print('\\n'.join(d.name for d in m.distributions()))"
    done = subprocess.run(
        [venv / "bin" / "python", "-c", code], capture_output=True, text=True, check=True
    )
    return {name.lower().replace("_", "-") for name in done.stdout.split()}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dist` into a folder of this module's own, so the checkout's dist/ is left alone."""
    folder = tmp_path_factory.mktemp("dist")
    make = require_binary("make")
    subprocess.run(
        [make, "--no-print-directory", "-C", str(ROOT), "dist", f"DIST={folder}"],
        check=True,
        timeout=120,
    )
    return folder


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    """A simulator for the installed probe to read."""
    with running_sim() as handle:
        yield handle


def test_the_probe_extra_is_the_probe_wheels_dependencies() -> None:
    """`llmgw[probe]` and the llmgw-probe wheel ask for the same ranges."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    probe_wheel = dependencies(ROOT / "infra" / "probe" / "pyproject.toml")
    assert extras["optional-dependencies"]["probe"] == probe_wheel


@pytest.mark.slow
def test_each_wheel_holds_its_packages_only(dist: Path) -> None:
    """The gateway's wheel holds app, sim and probe; the probe's holds probe alone."""
    (gateway,) = dist.glob("llmgw-*.whl")
    (probe,) = dist.glob("llmgw_probe-*.whl")
    for wheel, packages in ((gateway, {"app", "sim", "probe"}), (probe, {"probe"})):
        tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
        assert {top for top in tops if not top.endswith(".dist-info")} == packages
    # `llmgw demo` indexes its sample posts from the installed package.
    assert "app/posts/demo/tailscale-funnel.md" in zipfile.ZipFile(gateway).namelist()


@pytest.mark.slow
def test_the_probe_wheel_installs_without_litestar_and_reads_a_model_server(
    dist: Path, sim: SimHandle, tmp_path: Path
) -> None:
    """The README's lines put the probe in a bare venv with nothing of the gateway, and its
    `llmgw-probe --once` prints a snapshot of a live model server."""
    venv = tmp_path / "llmgw-probe"
    run_install_lines(PROBE_VENV, venv, dist)
    names = installed(venv)
    assert "llmgw-probe" in names
    assert not GATEWAY_ONLY & names
    environment = {
        "PATH": os.environ["PATH"],
        "LLMGW_PROBE_MODEL_URL": sim.url,
        "LLMGW_PROBE_GPU": "sim",
        "LLMGW_PROBE_METRICS_PORT": "0",
    }
    command = [str(venv / "bin" / "llmgw-probe"), "--once"]
    done = subprocess.run(
        command, env=environment, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    snapshot = json.loads(done.stdout)
    assert snapshot["gpu_source"] == "sim"
    assert snapshot["model_server_up"] == 1


@pytest.mark.slow
def test_the_gateway_wheel_installs_and_serves(dist: Path, redis_url: str, tmp_path: Path) -> None:
    """The README's lines install the gateway's wheel, and its `llmgw serve` answers /healthz."""
    venv = tmp_path / "llmgw"
    run_install_lines(GATEWAY_VENV, venv, dist)
    assert "llmgw" in installed(venv)
    port = free_port()
    environment = {
        "PATH": os.environ["PATH"],
        "LLMGW_REDIS_URL": redis_url,
        "LLMGW_HOST": "127.0.0.1",
        "LLMGW_PORT": str(port),
    }
    server = subprocess.Popen(
        [venv / "bin" / "llmgw", "serve"], env=environment, stderr=subprocess.DEVNULL
    )
    try:
        assert eventually(lambda: healthy(f"http://127.0.0.1:{port}/healthz"), timeout=20)
    finally:
        stop_process(server)


def healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False
