"""The federation config: one TOML file the data council owns.

Every field is validated on load; a bad field raises ConfigError naming the file and the field path
(``markets.FD003.subsample``), so a typo never becomes a half-run round.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fedpipe.errors import ConfigError

STRATEGIES = ("bagging",)
# The same rule fedpipe.keys applies to party names: a market's name becomes its key files' names.
MARKET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MarketConfig(_Strict):
    """A market as the federation knows it. ``data`` is only read by that market's own flow."""

    data: Path = Field(description="the market's local data folder (read only inside the market)")
    subsample: float = Field(1.0, gt=0, le=1, description="keep this fraction of training entities (simulation)")
    state: Path | None = Field(None, description="the market's private working folder; default .fedpipe/markets/<name>")


class RoiConfig(_Strict):
    threshold: float = Field(0.5, gt=0, lt=1, description="act when the predicted probability reaches this")
    cost_unplanned_failure: float = Field(250_000, ge=0)
    cost_planned_maintenance: float = Field(40_000, ge=0)
    cost_needless_inspection: float = Field(8_000, ge=0)


class FederationConfig(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    usecase: str = Field(min_length=1)
    rounds: int = Field(5, ge=1, le=1000)
    trees_per_round: int = Field(10, ge=1, le=1000, description="new trees each market adds per round")
    quorum: int = Field(2, ge=1, description="minimum markets with a valid update for a round to count")
    strategy: Literal[STRATEGIES] = "bagging"  # type: ignore[valid-type]
    seed: int = 0
    market_timeout_s: float = Field(900, gt=0, description="a market flow running longer is dropped")
    model: dict[str, Any] = Field(default_factory=dict, description="XGBoost parameters")
    usecase_options: dict[str, Any] = Field(default_factory=dict)
    roi: RoiConfig = Field(default_factory=RoiConfig)
    markets: dict[str, MarketConfig]
    runs_dir: Path = Path("runs")
    keys_dir: Path = Path(".fedpipe/keys")
    source: Path | None = None  # the file this was read from

    @field_validator("markets")
    @classmethod
    def _names(cls, markets: dict[str, MarketConfig]) -> dict[str, MarketConfig]:
        if not markets:
            raise ValueError("a federation needs at least one market")
        for name in markets:
            if not MARKET_NAME.match(name) or name == "aggregator":
                raise ValueError(f"market name '{name}' must be 1-64 ASCII letters, digits, '.', '-' or '_', "
                                 "start with a letter or digit, and not be 'aggregator'")
        return markets

    def market_state(self, market: str) -> Path:
        return self.markets[market].state or Path(".fedpipe/markets") / market

    def xgb_params(self) -> dict[str, Any]:
        """XGBoost parameters every market trains with; the objective comes from the use case."""
        params = {"tree_method": "hist", "max_depth": 6, "eta": 0.3, "seed": self.seed, "nthread": 0}
        params.update(self.model)
        return params


def _field_path(error: dict) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def _resolve(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else (base / path).resolve()


def parse_federation(raw: dict[str, Any], source: Path) -> FederationConfig:
    """Validate a parsed TOML document.

    Market paths (``data``, ``state``) are relative to the config file's folder; ``runs_dir`` and ``keys_dir``
    to the working folder, so one federation file serves several checkouts.
    """
    doc = dict(raw.get("federation", {}))
    unknown = set(raw) - {"federation", "model", "usecase", "roi", "markets"}
    if unknown:
        raise ConfigError(source, sorted(unknown)[0], "unknown section (expected federation, model, usecase, roi, markets)")
    doc.update(
        model=raw.get("model", {}),
        usecase_options=raw.get("usecase", {}),
        roi=raw.get("roi", {}),
        markets=raw.get("markets", {}),
        source=source,
    )
    try:
        config = FederationConfig.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(source, _field_path(first), first["msg"]) from None
    if config.quorum > len(config.markets):
        raise ConfigError(source, "quorum", f"quorum {config.quorum} is more than the {len(config.markets)} markets")
    if importlib.util.find_spec(f"usecases.{config.usecase}") is None:
        raise ConfigError(source, "usecase", f"no use case named '{config.usecase}' (no usecases/{config.usecase}/)")
    base = source.parent
    markets = {
        name: m.model_copy(update={"data": _resolve(base, m.data), "state": _resolve(base, m.state) if m.state else None})
        for name, m in config.markets.items()
    }
    return config.model_copy(
        update={"markets": markets, "runs_dir": _resolve(Path.cwd(), config.runs_dir),
                "keys_dir": _resolve(Path.cwd(), config.keys_dir)}
    )


def load_federation(path: str | Path) -> FederationConfig:
    """Read and validate a federation TOML file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, "(file)", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "(file)", f"cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(syntax)", f"not valid TOML: {exc}") from None
    return parse_federation(raw, path.resolve())
