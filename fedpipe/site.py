"""A market machine's own configuration: where its data, state and keys live.

The federation file is the council's, shared by everyone; a site file is the market's, kept on its own machine and
never sent anywhere. A market agent (``fedpipe agent --site FILE``, or ``FEDPIPE_SITE=FILE``) reads it, so the
centre never learns where a market's data is::

    market = "FD001"
    federation = "federation.toml"   # this machine's copy of the council's federation file
    data = "/srv/fd001/data"          # the market's data folder
    state = "/srv/fd001/state"        # private working folder (validation cache, local-only model)
    keys_dir = "/srv/fd001/keys"      # its private keys and the aggregator's public identity

Relative paths are relative to the site file. Without a site file (the embedded demo) everything comes from the
federation file, as before.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedpipe import keys
from fedpipe.config import MARKET_NAME, read_toml
from fedpipe.errors import ConfigError

ENV = "FEDPIPE_SITE"
log = logging.getLogger(__name__)


class SiteConfig(BaseModel):
    """One market machine's private settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    market: str = Field(pattern=MARKET_NAME.pattern, description="the market this machine runs")
    federation: Path | None = Field(None, description="this machine's copy of the federation file")
    data: Path = Field(description="the market's data folder")
    state: Path = Field(description="the market's private working folder")
    keys_dir: Path = Field(description="the market's private keys and the aggregator's public identity")
    fault_delay_s: float = Field(0, ge=0, description="testing only: sleep this long in fault_flow (a hung market)")
    fault_flow: str = Field("market-train", description="testing only: the market flow that sleeps")
    source: Path | None = None


def load_site(path: str | Path) -> SiteConfig:
    """Read and validate a site file; errors name the file and the field."""
    path = Path(path).resolve()
    raw = read_toml(path, missing="no such site file")
    try:
        site = SiteConfig.model_validate({**raw, "source": path})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(path, ".".join(str(p) for p in first["loc"]) or "(top level)", first["msg"]) from None
    resolve = lambda p: p if p is None or p.is_absolute() else (path.parent / p).resolve()  # noqa: E731
    return site.model_copy(update={name: resolve(getattr(site, name))
                                   for name in ("federation", "data", "state", "keys_dir")})


def site_from_env(market: str) -> SiteConfig | None:
    """The site file named by FEDPIPE_SITE, checked to be for ``market``; None when the variable is unset."""
    if not os.environ.get(ENV):
        return None
    site = load_site(os.environ[ENV])
    if site.market != market:
        raise ConfigError(site.source, "market",
                          f"this machine runs market '{site.market}' but was asked to run '{market}'")
    return site


def write_site(path: Path, market: str, data: Path, state: Path, keys_dir: Path,
               federation: Path | None = None, **extra) -> Path:
    """Write a site file (used by `fedpipe up` and the tests to set up agents on one machine)."""
    import tomli_w  # only needed when writing one

    doc = {"market": market, "data": str(data), "state": str(state), "keys_dir": str(keys_dir), **extra}
    if federation is not None:
        doc["federation"] = str(federation)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tomli_w.dumps(doc).encode())
    return path


def share_public_keys(central_keys: Path, sites: list[SiteConfig]) -> None:
    """Introduce the parties on one machine: each market gets the aggregator's public identity, the centre each
    market's. Across machines the same ``<party>.pub.json`` files are exchanged out of band."""
    keys.ensure_identity(central_keys, "aggregator")
    for site in sites:
        keys.ensure_identity(site.keys_dir, site.market)
        if (Path(central_keys) / f"{site.market}.sign.pem").exists():  # an embedded-mode identity lives here
            raise keys.KeyFileError(
                f"{central_keys} holds {site.market}'s private keys (the embedded demo's); the agent's public "
                f"identity would replace theirs. Give the centre its own keys_dir for the deployed federation.")
        shutil.copyfile(Path(central_keys) / "aggregator.pub.json", site.keys_dir / "aggregator.pub.json")
        shutil.copyfile(site.keys_dir / f"{site.market}.pub.json", Path(central_keys) / f"{site.market}.pub.json")


def _current_flow() -> str | None:
    from prefect.runtime import flow_run

    return flow_run.flow_name


def open_market_site(config: str | Path, market: str, exchange: str):
    """The MarketSite a market flow works with.

    On an agent (FEDPIPE_SITE set) the data, state and keys come from this machine's site file, and the shared
    settings from its own copy of the federation file when it names one; otherwise all from ``config``.
    """
    import time

    from fedpipe.config import load_federation
    from fedpipe.market import MarketSite
    from fedpipe.storage import Exchange

    local = site_from_env(market)
    federation = load_federation(local.federation if local and local.federation else config)
    if market not in federation.markets:
        raise ConfigError(federation.source, f"markets.{market}", "this market is not in the federation")
    if local and local.fault_delay_s and _current_flow() == local.fault_flow:
        log.warning("%s: fault injection: sleeping %.0f s (site file %s)", market, local.fault_delay_s, local.source)
        time.sleep(local.fault_delay_s)
    return MarketSite(federation, market, Exchange(exchange), local)
