"""infra/gateway/docker-compose.yaml without a Docker engine: it parses, everything it mounts or
builds exists, its LLMGW_* variables are real settings that validate, and its service names and
ports agree with what Prometheus scrapes and Grafana reads."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml  # type: ignore[import-untyped]
from gateway_files import (
    COMPOSE,
    GATEWAY,
    PROMETHEUS,
    ROOT,
    env_example,
    final_stage,
    interpolate,
    load_compose,
    referenced_variables,
)
from support import free_port, require_binary, wait_for_port

from app.settings import Settings, load_settings

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SERVICES = {"gateway", "redis", "prometheus", "alertmanager", "grafana", "blackbox"}
# Where each service listens inside its container: the images' defaults, and the gateway's port.
LISTENS = {"prometheus": 9090, "alertmanager": 9093, "grafana": 3000, "blackbox": 9115}
SECRETS = ("LLMGW_UPSTREAM_TOKEN", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD")
PASSWORD = "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def gateway_environment(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The gateway's environment as compose gives it, from .env.example's values, plus the
    Dockerfile's ENV under it."""
    image_env: dict[str, str] = {}
    for step in final_stage():
        if step.keyword == "ENV":
            image_env |= dict(re.findall(r"(\w+)=(\S+)", step.arguments))
    values = env_example()
    given = services["gateway"]["environment"]
    return image_env | {name: interpolate(str(value), values) for name, value in given.items()}


def host_paths(service: dict[str, Any]) -> list[tuple[Path, str]]:
    """(host path, container path) of each bind mount; named volumes are left out."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts.append(((GATEWAY / source).resolve(), target))
    return mounts


def flag(service: dict[str, Any], name: str) -> str:
    """The value of `--name=value` in a service's command."""
    command: list[str] = service["command"]
    values = [arg.split("=", 1)[1] for arg in command if arg.startswith(f"--{name}=")]
    assert len(values) == 1, service["command"]
    return values[0]


def container_file(service: dict[str, Any], path: str) -> Path:
    """The host file a service sees at `path`, through its bind mounts."""
    for source, target in host_paths(service):
        if path == target or path.startswith(target.rstrip("/") + "/"):
            return source / path.removeprefix(target).lstrip("/")
    pytest.fail(f"nothing is mounted at {path}")


def test_compose_and_env_example_parse(compose: dict[str, Any]) -> None:
    """The compose file is YAML with the six services; .env.example is NAME=value lines."""
    assert set(compose["services"]) == SERVICES
    assert env_example()


def test_every_mounted_or_built_path_exists(services: dict[str, dict[str, Any]]) -> None:
    """Every bind-mounted file or folder and the build context and Dockerfile are in the repo."""
    for service in services.values():
        for source, _ in host_paths(service):
            assert source.exists(), source
    build = services["gateway"]["build"]
    context = (GATEWAY / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).is_file()


def test_every_llmgw_variable_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    """Each LLMGW_* name in compose and .env.example is a field of app/settings.py."""
    names = referenced_variables(COMPOSE.read_text()) | set(env_example())
    for service in services.values():
        names |= set(service.get("environment", {}))
    llmgw = {name for name in names if name.startswith("LLMGW_")}
    assert llmgw
    fields = {f"LLMGW_{field.upper()}" for field in Settings.model_fields}
    assert llmgw <= fields, llmgw - fields


def test_env_example_names_every_variable_and_no_real_secret() -> None:
    """Every `${NAME}` compose reads has a line in .env.example, and the secrets there are
    placeholders."""
    example = env_example()
    assert referenced_variables(COMPOSE.read_text()) <= example.keys()
    for name in SECRETS:
        assert example[name].startswith("REPLACE-ME"), name


def test_gateway_settings_from_env_example_validate(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateway's environment, filled from .env.example, is a valid configuration that
    listens on all interfaces at the published port, uses the compose Redis, and trusts
    exactly the compose network's gateway address."""
    environment = gateway_environment(services)
    for name in [name for name in os.environ if name.startswith("LLMGW_")]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.host == "0.0.0.0"
    published = services["gateway"]["ports"][0].rsplit(":", 1)[1]
    assert settings.port == int(published) == 8000
    assert settings.redis_url is not None
    redis_url = urlsplit(settings.redis_url.get_secret_value())
    assert (redis_url.hostname, redis_url.port) == ("redis", 6379)
    assert redis_url.password == env_example()["REDIS_PASSWORD"]
    subnet = ipaddress.ip_network(env_example()["GATEWAY_SUBNET"])
    gateway_address = ipaddress.ip_address(env_example()["GATEWAY_SUBNET_GATEWAY"])
    assert gateway_address in subnet
    assert settings.trusted_proxies == (ipaddress.ip_network(f"{gateway_address}/32"),)


def test_defaults_agree_with_env_example(compose: dict[str, Any]) -> None:
    """Compose's fallbacks (`${NAME:-default}`) are the values .env.example suggests, so a
    .env without a line behaves like the example."""
    example = env_example()
    defaults = re.findall(r"\$\{(\w+):-([^}]*)\}", COMPOSE.read_text())
    assert defaults
    for name, default in defaults:
        if name != "LLMGW_CORS_ORIGINS":  # no origin by default; the example shows one
            assert example[name] == default, name
    subnet = compose["networks"]["default"]["ipam"]["config"][0]
    assert interpolate(subnet["subnet"], example) == example["GATEWAY_SUBNET"]


def test_prometheus_scrapes_the_compose_services() -> None:
    """Every target of prometheus.yml is a compose service at the port it listens on."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets = [t for am in config["alerting"]["alertmanagers"] for s in am["static_configs"]
               for t in s["targets"]]  # fmt: skip
    for job in config["scrape_configs"]:
        targets += [t for static in job.get("static_configs", []) for t in static["targets"]]
        targets += [
            relabel["replacement"]
            for relabel in job.get("relabel_configs", [])
            if relabel.get("target_label") == "__address__"
        ]
    listens = LISTENS | {"gateway": 8000, "localhost": 9090}
    for target in targets:
        host, port = target.rsplit(":", 1)
        assert host in SERVICES | {"localhost"}, target
        assert int(port) == listens[host], target
    assert "gateway:8000" in targets


def test_prometheus_reads_its_config_rules_and_targets_from_the_mount(
    services: dict[str, dict[str, Any]],
) -> None:
    """--config.file is infra/prometheus/prometheus.yml through the mount; its rule files and
    file_sd target files exist; exemplar storage is on, as prometheus.yml asks."""
    prometheus = services["prometheus"]
    config_file = container_file(prometheus, flag(prometheus, "config.file"))
    assert config_file == PROMETHEUS / "prometheus.yml"
    config = yaml.safe_load(config_file.read_text())
    for pattern in config["rule_files"]:
        assert list(PROMETHEUS.glob(pattern)), pattern
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            assert all((PROMETHEUS / name).is_file() for name in sd["files"])
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    assert all(target != "/prometheus" for _, target in host_paths(prometheus))


def test_alertmanager_and_blackbox_read_the_shipped_configs(
    services: dict[str, dict[str, Any]],
) -> None:
    """Their --config.file flags point, through the mounts, at infra/alertmanager and at
    infra/prometheus/blackbox.yml."""
    alertmanager = services["alertmanager"]
    path = container_file(alertmanager, flag(alertmanager, "config.file"))
    assert path == ROOT / "infra" / "alertmanager" / "alertmanager.yml"
    blackbox = services["blackbox"]
    assert container_file(blackbox, flag(blackbox, "config.file")) == PROMETHEUS / "blackbox.yml"


def test_grafana_provisioning_is_mounted_where_grafana_reads_it(
    services: dict[str, dict[str, Any]],
) -> None:
    """The datasource and the dashboard provider of dashboards/provisioning are mounted in
    Grafana's provisioning folders, the dashboards at the provider's path, and the datasource
    points at the prometheus service."""
    grafana = services["grafana"]
    mounts = {target: source for source, target in host_paths(grafana)}
    provisioning = ROOT / "dashboards" / "provisioning"
    datasources = [t for t, s in mounts.items() if s == provisioning / "datasources.yml"]
    providers = [t for t, s in mounts.items() if s == provisioning / "dashboards.yml"]
    assert datasources[0].startswith("/etc/grafana/provisioning/datasources/")
    assert providers[0].startswith("/etc/grafana/provisioning/dashboards/")
    provider = yaml.safe_load((provisioning / "dashboards.yml").read_text())["providers"][0]
    dashboards = container_file(grafana, provider["options"]["path"])
    assert sorted(dashboards.glob("*.json"))
    datasource = yaml.safe_load((provisioning / "datasources.yml").read_text())["datasources"][0]
    url = urlsplit(datasource["url"])
    assert (url.hostname, url.port) == ("prometheus", LISTENS["prometheus"])


def test_images_are_pinned_and_ports_bound_to_loopback(
    services: dict[str, dict[str, Any]],
) -> None:
    """Every pulled image has a version tag (never `latest`), and every published port listens
    on 127.0.0.1 only, unless .env says otherwise (Redis, for the probe over the tailnet)."""
    for name, service in services.items():
        if "build" not in service:
            tag = service["image"].rpartition(":")[2]
            assert re.fullmatch(r"v?\d+\.\d+\.\d+(-\w+)?", tag), name
        for port in service.get("ports", []):
            assert interpolate(port, {}).startswith("127.0.0.1:"), (name, port)
            assert interpolate(port, env_example()).startswith("127.0.0.1:"), (name, port)


def test_every_service_restarts_and_is_health_checked(
    services: dict[str, dict[str, Any]],
) -> None:
    """Each service restarts unless stopped; each has a healthcheck (the gateway's is in its
    image) and the gateway starts only once Redis is healthy."""
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        assert name == "gateway" or service["healthcheck"]["test"], name
    assert any(step.keyword == "HEALTHCHECK" for step in final_stage())
    assert services["gateway"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_redis_password_comes_from_the_environment(services: dict[str, dict[str, Any]]) -> None:
    """requirepass is the REDIS_PASSWORD variable, not a literal, and the gateway's Redis URL
    carries the same variable."""
    script = services["redis"]["command"][-1]
    assert "requirepass $$REDIS_PASSWORD" in script
    assert services["redis"]["environment"]["REDIS_PASSWORD"].startswith("${REDIS_PASSWORD")
    assert "${REDIS_PASSWORD" in services["gateway"]["environment"]["LLMGW_REDIS_URL"]


@pytest.fixture
def compose_redis(services: dict[str, dict[str, Any]], tmp_path: Path) -> Iterator[int]:
    """The redis service's own command, run by sh with this machine's redis-server, on a
    free port: the port."""
    require_binary("redis-server")
    port = free_port()
    script = interpolate(services["redis"]["command"][-1], {})
    script = script.replace("redis-server -", f"redis-server - --port {port} --dir {tmp_path}")
    env = {"PATH": os.environ["PATH"], "REDIS_PASSWORD": PASSWORD}
    process = subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_redis_command_starts_a_password_protected_server(
    services: dict[str, dict[str, Any]], compose_redis: int
) -> None:
    """The heredoc in the redis command really sets requirepass (commands without the password
    are refused), and the healthcheck, with REDISCLI_AUTH, passes."""
    with redis.Redis(port=compose_redis) as anonymous, pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with redis.Redis(port=compose_redis, password=PASSWORD) as client:
        assert client.ping()
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    check = services["redis"]["healthcheck"]["test"][1]
    env = {"PATH": os.environ["PATH"], "REDISCLI_AUTH": PASSWORD}
    check = check.replace("redis-cli", f"redis-cli -p {compose_redis}")
    assert subprocess.run(["sh", "-c", check], env=env, check=False).returncode == 0
    env["REDISCLI_AUTH"] = "wrong"
    assert subprocess.run(["sh", "-c", check], env=env, check=False).returncode != 0
