"""Build the agent from settings: HTTP and Redis clients, collectors, metrics server."""

from __future__ import annotations

import contextlib
import logging
import platform
from typing import TYPE_CHECKING

import httpx
import redis.asyncio

from probe.agent import Agent, Identity
from probe.collectors.gpu_macos import MacGpuCollector
from probe.collectors.gpu_nvidia import NvidiaGpuCollector, nvml_available
from probe.collectors.gpu_sim import SimGpuCollector
from probe.collectors.memory import MemoryCollector
from probe.collectors.memory_pressure import pressure_collector
from probe.collectors.model_server import ModelServerCollector
from probe.collectors.power import CombinedSource, PowerCollector, PowerSource
from probe.collectors.power_macos import (
    MacmonPowerSource,
    PowermetricsPowerSource,
    macos_source_name,
)
from probe.collectors.power_nvidia import NvidiaPowerSource, nvml_has_gpus
from probe.collectors.power_rapl import RaplPowerSource, rapl_readable
from probe.collectors.power_sim import SimPowerSource
from probe.collectors.synthetic import SyntheticCollector
from probe.idle_baseline import IdleBaseline
from probe.metrics import ProbeMetrics, serve_metrics
from probe.publisher import RedisPublisher
from probe.runner import CollectorRunner

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from probe.collectors import Collector
    from probe.settings import ProbeSettings

LOG = logging.getLogger("probe")
SYNTHETIC_TIMEOUT = 60.0  # a loaded server may take this long to start answering
ONCE_SYNTHETIC_TIMEOUT = 15.0  # `--once` is interactive: give up sooner


def resolve_gpu_source(
    setting: str, system: str, nvidia_works: Callable[[], bool] = nvml_available
) -> str:
    """`auto` becomes macos on Darwin, nvidia where NVML starts, else none."""
    if setting != "auto":
        return setting
    if system == "Darwin":
        return "macos"
    return "nvidia" if nvidia_works() else "none"


def gpu_collector(source: str, client: httpx.AsyncClient) -> Collector | None:
    """The collector of a GPU source; None for `none`."""
    collectors: dict[str, Callable[[], Collector]] = {
        "macos": MacGpuCollector,
        "nvidia": NvidiaGpuCollector,
        "sim": lambda: SimGpuCollector(client),
    }
    make = collectors.get(source)
    return make() if make else None


def resolve_power_source(settings: ProbeSettings, system: str) -> str:
    """`auto` becomes macmon or powermetrics on a Mac (power_macos says which), on Linux
    nvidia and rapl, each where it can be read (both: `nvidia+rapl`), else none."""
    if settings.probe_power_source != "auto":
        return settings.probe_power_source
    if system == "Darwin":
        return macos_source_name()
    if system != "Linux":
        return "none"
    found = [name for name, works in _linux_sources(settings) if works()]
    return "+".join(found) or "none"


def _linux_sources(settings: ProbeSettings) -> list[tuple[str, Callable[[], bool]]]:
    return [("nvidia", nvml_has_gpus), ("rapl", lambda: rapl_readable(settings.probe_rapl_root))]


def power_source(name: str, settings: ProbeSettings, client: httpx.AsyncClient) -> PowerSource:
    """The source of a resolved name (not `auto`, not `none`); `a+b` reads both."""
    sources: dict[str, Callable[[], PowerSource]] = {
        "macmon": lambda: MacmonPowerSource(settings.probe_interval),
        "powermetrics": lambda: PowermetricsPowerSource(settings.probe_interval),
        "nvidia": NvidiaPowerSource,
        "rapl": lambda: RaplPowerSource(settings.probe_rapl_root),
        "sim": lambda: SimPowerSource(client),
    }
    parts = [sources[part]() for part in name.split("+")]
    return parts[0] if len(parts) == 1 else CombinedSource(parts)


def build_collectors(
    settings: ProbeSettings,
    client: httpx.AsyncClient,
    gpu_source: str,
    *,
    once: bool,
    power: str = "none",
) -> list[Collector]:
    """Every collector that applies to this host and these settings."""
    system = platform.system()
    optional = [pressure_collector(system), gpu_collector(gpu_source, client)]
    if power != "none":
        optional.append(PowerCollector(power_source(power, settings, client)))
    model_server = ModelServerCollector(client, settings.model)
    collectors = [MemoryCollector(), *filter(None, optional), model_server]
    if settings.probe_synthetic_interval > 0:
        timeout = ONCE_SYNTHETIC_TIMEOUT if once else SYNTHETIC_TIMEOUT
        every = settings.probe_synthetic_interval
        model = settings.synthetic_model
        collectors.append(
            SyntheticCollector(client, every=every, timeout=timeout, model=model, wait=once)
        )
    return collectors


def model_client(settings: ProbeSettings) -> httpx.AsyncClient:
    """HTTP client for the model server, bearer token attached when one is configured."""
    token = settings.probe_model_token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
    # trust_env off: a desktop proxy setting must not catch calls to the local model server.
    return httpx.AsyncClient(
        base_url=settings.probe_model_url,
        headers=headers,
        timeout=settings.probe_timeout,
        trust_env=False,
    )


def redis_publisher(settings: ProbeSettings) -> RedisPublisher | None:
    """A publisher to LLMGW_REDIS_URL, or None (and a log line) when it is not set."""
    if settings.redis_url is None:
        LOG.warning("LLMGW_REDIS_URL is not set: not publishing, serving /metrics only")
        return None
    client = redis.asyncio.Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.probe_timeout,
        socket_connect_timeout=settings.probe_timeout,
    )
    return RedisPublisher(
        client,
        prefix=settings.key_prefix,
        host=settings.probe_host,
        interval=settings.probe_interval,
    )


@contextlib.asynccontextmanager
async def open_agent(settings: ProbeSettings, *, once: bool = False) -> AsyncIterator[Agent]:
    """An agent with its clients open; `once` builds it for one look (no Redis, no server)."""
    _warn_about_the_model(settings)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(model_client(settings))
        gpu_source = resolve_gpu_source(settings.probe_gpu, platform.system())
        power = resolve_power_source(settings, platform.system())
        LOG.info("power source: %s", power)
        collectors = build_collectors(settings, client, gpu_source, once=once, power=power)
        stack.push_async_callback(_close_collectors, collectors)
        identity = Identity(
            host=settings.probe_host,
            interval=settings.probe_interval,
            gpu_source=gpu_source,
            power_source=power,
        )
        runners = [CollectorRunner(c, _time_limit(c, settings, once=once)) for c in collectors]
        baseline = IdleBaseline(below=settings.probe_idle_below)
        agent = Agent(runners, identity=identity, baseline=baseline)
        if not once:
            _attach_outputs(stack, agent, settings)
        yield agent


def _warn_about_the_model(settings: ProbeSettings) -> None:
    if settings.model is None:
        LOG.warning(
            "LLMGW_MODEL is not set: model_available is not published and model_loaded means"
            " any LLM; set it to the gateway's LLMGW_MODEL"
        )
    elif settings.synthetic_model != settings.model:
        # Allowed by LLMGW_PROBE_ALLOW_OTHER_MODEL: say once what it costs.
        LOG.warning("the synthetic generation names %s, not the blog's model", settings.probe_model)


def _time_limit(collector: Collector, settings: ProbeSettings, *, once: bool) -> float:
    # Only a synthetic collector that waits for its generation (`--once`) needs longer.
    if once and isinstance(collector, SyntheticCollector):
        return ONCE_SYNTHETIC_TIMEOUT + settings.probe_timeout
    return settings.probe_timeout


async def _close_collectors(collectors: list[Collector]) -> None:
    for collector in collectors:
        if isinstance(collector, SyntheticCollector | PowerCollector):
            await collector.aclose()


def _attach_outputs(
    stack: contextlib.AsyncExitStack, agent: Agent, settings: ProbeSettings
) -> None:
    agent.publisher = redis_publisher(settings)
    if agent.publisher is not None:
        stack.push_async_callback(agent.publisher.aclose)
    agent.metrics = ProbeMetrics(power_source=agent.identity.power_source)
    _start_metrics(stack, agent.metrics, settings)


def _start_metrics(
    stack: contextlib.AsyncExitStack, metrics: ProbeMetrics, settings: ProbeSettings
) -> None:
    if settings.probe_metrics_port == 0:
        return
    host, port = settings.probe_metrics_host, settings.probe_metrics_port
    try:
        server, _ = serve_metrics(metrics, host, port)
    except OSError as exc:  # publishing matters more than our own /metrics: carry on
        message = "cannot serve /metrics on %s:%d: %s"
        LOG.error(message, host, port, exc)  # noqa: TRY400 - the reason is enough
        return
    stack.callback(server.server_close)
    stack.callback(server.shutdown)
    LOG.info("serving /metrics on %s:%d", host, port)
