"""The service files in infra/probe run the command its README installs, and name only real
settings, with values the probe accepts."""

from __future__ import annotations

import pathlib
import plistlib
import re
import tomllib

from probe.settings import ProbeSettings, load_settings

INFRA = pathlib.Path(__file__).parents[2] / "infra" / "probe"
SETTINGS = {"LLMGW_" + name.upper() for name in ProbeSettings.model_fields}


def settings_from(variables: dict[str, str]) -> ProbeSettings:
    """Load settings from these variables, as field overrides."""
    return load_settings(
        **{name.removeprefix("LLMGW_").lower(): v for name, v in variables.items()}
    )


def installed_command(venv: str) -> str:
    """The llmgw-probe command in `venv`, once the README's lines installed the wheel there."""
    readme = (INFRA / "README.md").read_text()
    assert f"python3 -m venv {venv}\n" in readme
    locked = "--require-hashes -r dist/llmgw-probe.requirements.txt"  # as tests/packaging runs it
    assert f"{venv}/bin/pip install {locked}\n" in readme
    assert f"{venv}/bin/pip install --no-deps dist/llmgw_probe-" in readme
    scripts = tomllib.loads((INFRA / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"llmgw-probe": "probe.cli:standalone"}
    return f"{venv}/bin/llmgw-probe"


def test_launchd_plist_runs_the_probe_at_load_and_keeps_it_alive() -> None:
    """The plist is valid, starts the `llmgw-probe` that the README installs at login and
    restarts it."""
    plist = plistlib.loads((INFRA / "com.llmgw.probe.plist").read_bytes())
    command = installed_command("~/.local/share/llmgw-probe").replace("~", "/Users/YOU")
    assert plist["ProgramArguments"] == [command]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] is True
    assert "/Library/Logs/" in plist["StandardErrorPath"]
    assert set(plist["EnvironmentVariables"]) <= SETTINGS
    assert settings_from(plist["EnvironmentVariables"]).probe_interval == 2


def test_env_example_names_only_settings_and_loads() -> None:
    """Every variable of probe.env.example, even commented out, is one the probe reads."""
    text = (INFRA / "probe.env.example").read_text()
    named = set(re.findall(r"^#? ?(LLMGW_[A-Z_]+)=", text, flags=re.MULTILINE))
    assert named <= SETTINGS
    assert len(named) == len(SETTINGS)
    active = dict(re.findall(r"^(LLMGW_[A-Z_]+)=(.*)$", text, flags=re.MULTILINE))
    assert settings_from(active).probe_gpu == "auto"


def test_systemd_unit_reads_the_env_file_restarts_and_runs_unprivileged() -> None:
    """The unit runs the `llmgw-probe` that the README installs, takes /etc/llmgw/probe.env,
    restarts always and uses a dynamic user."""
    lines = set((INFRA / "llmgw-probe.service").read_text().splitlines())
    assert f"ExecStart={installed_command('/opt/llmgw-probe')}" in lines
    assert {
        "EnvironmentFile=/etc/llmgw/probe.env",
        "Restart=always",
        "DynamicUser=yes",
        "ProtectSystem=strict",
    } <= lines
