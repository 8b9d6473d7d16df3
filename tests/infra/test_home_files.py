"""The files of infra/home parse, agree with each other, and nginx accepts the config as shipped."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pytest
from home_nginx import HOME, TEMPLATE, envsubst, lay_out, nginx_command, shipped_maps
from support import require_binary

if TYPE_CHECKING:
    from pathlib import Path

# ${NAME}, ${NAME:-default}, ${NAME:?message}: compose interpolation and envsubst alike.
VARIABLE = re.compile(r"\$\{(\w+)")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml")
    document: dict[str, Any] = yaml.safe_load((HOME / "docker-compose.yaml").read_text())
    return document


@pytest.fixture(scope="module")
def nginx_environment(compose: dict[str, Any]) -> dict[str, str]:
    environment: dict[str, str] = compose["services"]["nginx"]["environment"]
    return environment


def env_example() -> dict[str, str]:
    lines = (HOME / ".env.example").read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def test_nginx_shares_the_tailscale_network_namespace(compose: dict[str, Any]) -> None:
    """nginx runs in tailscale's network namespace, as in the reference setup."""
    assert compose["services"]["nginx"]["network_mode"] == "service:tailscale"


@pytest.mark.parametrize("service", ["tailscale", "nginx"])
def test_services_are_pinned_checked_and_restarted(compose: dict[str, Any], service: str) -> None:
    """Each service has a pinned image tag (not `latest`), a healthcheck and a restart policy."""
    definition = compose["services"][service]
    _, _, tag = definition["image"].partition(":")
    assert re.fullmatch(r"v?\d+\.\d+\.\d+(-\w+)?", tag), definition["image"]
    assert definition["healthcheck"]["test"]
    assert definition["restart"] == "unless-stopped"


def test_nginx_mounts_are_read_only(compose: dict[str, Any]) -> None:
    """Config, template and tokens are mounted read-only into nginx."""
    volumes = compose["services"]["nginx"]["volumes"]
    assert volumes
    assert all(volume.endswith(":ro") for volume in volumes)


def test_env_example_names_every_variable_compose_reads() -> None:
    """Every `${NAME}` in docker-compose.yaml has a line in .env.example, with no real secret."""
    wanted = set(VARIABLE.findall((HOME / "docker-compose.yaml").read_text()))
    example = env_example()
    assert wanted <= example.keys()
    assert "REPLACE" in example["TS_AUTHKEY"]


def test_lm_studio_token_is_always_set_and_empty_by_default(
    nginx_environment: dict[str, str],
) -> None:
    """Compose always passes LM Studio's token, empty unless .env sets it, as the example ships."""
    assert nginx_environment["LLMGW_LMSTUDIO_API_TOKEN"] == "${LLMGW_LMSTUDIO_API_TOKEN:-}"
    assert env_example()["LLMGW_LMSTUDIO_API_TOKEN"] == ""


def test_template_variables_come_from_compose(nginx_environment: dict[str, str]) -> None:
    """Every variable the template uses is set for nginx and passes the envsubst filter."""
    used = set(VARIABLE.findall(TEMPLATE.read_text()))
    assert used == {"LLMGW_LMSTUDIO_ADDRESS", "LLMGW_NGINX_LISTEN", "LLMGW_LMSTUDIO_API_TOKEN"}
    assert used <= nginx_environment.keys()
    assert all(re.match(nginx_environment["NGINX_ENVSUBST_FILTER"], name) for name in used)


def test_rendering_matches_the_images_envsubst(nginx_environment: dict[str, str]) -> None:
    """The tests render the template as the image's entrypoint does: envsubst on filtered names."""
    binary = shutil.which("envsubst")
    if binary is None:
        pytest.skip("envsubst (gettext-base) is not installed")
    values = {
        "LLMGW_LMSTUDIO_ADDRESS": "127.0.0.1:1234",
        "LLMGW_NGINX_LISTEN": "127.0.0.1:8080",
        "LLMGW_LMSTUDIO_API_TOKEN": "",  # compose's default: set, and empty
    }
    environment = {**values, "NGINX_VERSION": "1.30.4", "http_origin": "clobbered"}
    names = [
        name for name in environment if re.match(nginx_environment["NGINX_ENVSUBST_FILTER"], name)
    ]
    shell_format = " ".join(f"${{{name}}}" for name in names)
    rendered = subprocess.run(
        [binary, shell_format],
        input=TEMPLATE.read_text(),
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert rendered == envsubst(TEMPLATE.read_text(), values)
    assert "$http_origin" in rendered  # the filter keeps nginx's own variables


def test_serve_config_proxies_to_where_nginx_listens(nginx_environment: dict[str, str]) -> None:
    """ts.json parses, funnels port 443, and proxies to the address nginx listens on."""
    serve = json.loads((HOME / "ts.json").read_text())
    web = serve["Web"]["${TS_CERT_DOMAIN}:443"]
    assert web["Handlers"]["/"]["Proxy"] == f"http://{nginx_environment['LLMGW_NGINX_LISTEN']}"
    assert serve["AllowFunnel"]["${TS_CERT_DOMAIN}:443"] is True


def test_shipped_tokens_example_lets_nobody_in() -> None:
    """tokens.map.example has no active line, so a copy left unedited admits no token."""
    lines = (HOME / "nginx" / "tokens.map.example").read_text().splitlines()
    assert all(not line.strip() or line.lstrip().startswith("#") for line in lines)


def test_tokens_file_is_ignored_by_git() -> None:
    """git ignores the real tokens file, the machine state and .env in infra/home."""
    git = require_binary("git")
    for path in ("nginx/tokens.map", "state/tailscale/tailscaled.state", ".env"):
        ignored = subprocess.run([git, "check-ignore", "-q", path], cwd=HOME, check=False)
        assert ignored.returncode == 0, path


@pytest.mark.parametrize("lmstudio_token", ["", "sk-lm-AbC123:dEf456"], ids=["none", "set"])
def test_nginx_accepts_the_shipped_config(
    tmp_path: Path, nginx_environment: dict[str, str], lmstudio_token: str
) -> None:
    """`nginx -t` accepts the template rendered with compose's values and the shipped map files."""
    binary = require_binary("nginx")
    # host.docker.internal resolves only inside the container: nginx -t resolves upstreams.
    listen = nginx_environment["LLMGW_NGINX_LISTEN"]
    site = shipped_maps(upstream="127.0.0.1:1234", listen=listen, lmstudio_token=lmstudio_token)
    lay_out(tmp_path, site)
    checked = subprocess.run(
        nginx_command(binary, tmp_path, "-t"), capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
