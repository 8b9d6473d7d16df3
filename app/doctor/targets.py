"""The model hosts the doctor walks: each home host, then the hosted fallback (issue 15).

Each comes with the names of the variables that set it, so that advice names the one to change:
the single host of LLMGW_UPSTREAM_URL keeps its old names (LLMGW_UPSTREAM_TOKEN, LLMGW_MODEL), a
host of LLMGW_UPSTREAMS has its own (LLMGW_UPSTREAM_MAC1_TOKEN), the fallback LLMGW_FALLBACK_*.
The single host's findings are unlabelled, as before hosts existed; every other host's carry its
configured name, and nothing else of it (its URL only where the doctor shows URLs, redacted).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import SecretStr

    from app.settings import Settings, UpstreamHost

SINGLE_HOST_VARIABLES = {
    "url": "LLMGW_UPSTREAM_URL",
    "token": "LLMGW_UPSTREAM_TOKEN",
    "model": "LLMGW_MODEL",
    "max_inflight": "LLMGW_MAX_INFLIGHT",
}


@dataclass(frozen=True, slots=True)
class Target:
    """One host under check."""

    host: UpstreamHost

    @property
    def url(self) -> str:
        return self.host.url

    @property
    def token(self) -> SecretStr | None:
        return self.host.token

    @property
    def model(self) -> str:
        return self.host.model

    @property
    def max_inflight(self) -> int:
        return self.host.max_inflight

    @property
    def fallback(self) -> bool:
        return self.host.fallback

    @property
    def single(self) -> bool:
        """The one host of LLMGW_UPSTREAM_URL (it alone has no probe name of its own)."""
        return self.host.probe is None and not self.host.fallback

    @property
    def label(self) -> str:
        """What its findings are labelled with: nothing for the single host, else its name."""
        return "" if self.single else self.host.name

    def var(self, part: str) -> str:
        """The variable that sets this part (url, token, model, max_inflight) of this host."""
        if self.fallback:
            return f"LLMGW_FALLBACK_{part.upper()}"
        if self.single:
            return SINGLE_HOST_VARIABLES[part]
        return f"LLMGW_UPSTREAM_{self.host.name.upper()}_{part.upper()}"


def targets(settings: Settings) -> list[Target]:
    """Every home host in its configured order, then the fallback when one is configured."""
    fallback = settings.fallback_host()
    hosts = [*settings.hosts(), *([fallback] if fallback is not None else [])]
    return [Target(host) for host in hosts]
