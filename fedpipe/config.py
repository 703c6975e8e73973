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
from fedpipe.trust import PartyKeys

STRATEGIES = ("bagging", "cyclic", "fedavg", "histogram")  # the round flow's (fedpipe/strategies/, flows/)
# Strategies whose markets start boosting on their own: without an agreed [model] base_score XGBoost would fit each
# market's intercept to its own labels (its label mean leaves in the update, and the centre would sum trees grown
# on different intercepts). Histogram fits one intercept over the collective; fedavg is a linear model.
NEEDS_BASE_SCORE = ("bagging", "cyclic")
# The same rule fedpipe.keys applies to party names: a market's name becomes its key files' names.
MARKET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MarketConfig(PartyKeys, _Strict):
    """A market as the federation knows it. ``data`` is only read by that market's own flow.

    Its key fields (``enc_public``, ``sign_public``, ``previous_keys``, ``revoked``) are fedpipe.trust.PartyKeys."""

    data: Path = Field(description="the market's local data folder (read only inside the market)")
    subsample: float = Field(1.0, gt=0, le=1, description="keep this fraction of training entities (simulation)")
    state: Path | None = Field(None, description="the market's private working folder; default .fedpipe/markets/<name>")


class RoiConfig(_Strict):
    """The business-value parameters. Extra keys are a use case's own (checked against its defaults on load)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    threshold: float = Field(0.5, gt=0, lt=1, description="act when the predicted probability reaches this")
    cost_unplanned_failure: float = Field(250_000, ge=0)
    cost_planned_maintenance: float = Field(40_000, ge=0)
    cost_needless_inspection: float = Field(8_000, ge=0)


class ScreeningConfig(_Strict):
    """Limits every update must meet, and the optional hold-out check of each update (fedpipe.screening)."""

    max_update_mb: float = Field(16, gt=0, description="a sealed update larger than this is rejected unopened")
    holdout_check: bool = Field(False, description="each market scores every other market's update on its own "
                                                   "held-out rows (costs one extra market flow per market per round)")
    max_loss_increase: float = Field(0.05, ge=0, description="reject an update if, on the other markets' held-out "
                                                             "rows, it raises the loss by more than this fraction "
                                                             "(median over markets)")


class RegistryConfig(_Strict):
    """The council's model registry and its "no market worse off" gate."""

    dir: Path | None = Field(None, description="registry folder (relative to the working folder); default "
                                              "registry/ next to runs_dir")
    metric: Literal["log_loss", "auc", "precision", "recall", "mae", "rmse", "r2"] = Field(
        "log_loss", description="gate metric, as each market's evaluation reports it")
    tolerance: float = Field(0.01, ge=0, description="a market may lose at most this much on the gate metric")


class FederationConfig(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    usecase: str = Field(min_length=1)
    rounds: int = Field(5, ge=1, le=1000)
    trees_per_round: int = Field(10, ge=1, le=1000, description="new trees each market adds per round")
    quorum: int = Field(2, ge=1, description="minimum markets with a valid update for a round to count")
    strategy: Literal[STRATEGIES] = "bagging"  # type: ignore[valid-type]
    secure_aggregation: bool = Field(False, description="markets send masked sums of their evaluation figures; "
                                                         "the centre learns only federation totals (fedpipe.secagg)")
    seed: int = Field(0, ge=0)
    market_timeout_s: float = Field(900, gt=0, description="a market flow running longer is dropped")
    model: dict[str, Any] = Field(default_factory=dict, description="XGBoost parameters")
    usecase_options: dict[str, Any] = Field(default_factory=dict)
    roi: RoiConfig = Field(default_factory=RoiConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    screening: ScreeningConfig = Field(default_factory=ScreeningConfig)
    markets: dict[str, MarketConfig]
    runs_dir: Path = Path("runs")
    keys_dir: Path = Path(".fedpipe/keys")
    aggregator: PartyKeys | None = Field(None, description="the aggregator's registered public keys ([aggregator])")
    # Deployed mode (fedpipe deploy / fedpipe agent): see README "Run it across machines".
    cadence: str | None = Field(None, description="cron schedule of the deployed round flow, e.g. '0 3 * * 1'")
    exchange: str | None = Field(None, description="fsspec URL of the exchange (s3://, az://, gs://, a folder); "
                                                   "each run uses <exchange>/<run-id>; default runs/<run-id>/exchange")
    histogram_host: str = Field("127.0.0.1", min_length=1, description=(
        "address markets dial for the histogram collective, and the name in its server certificate; "
        "FEDPIPE_HISTOGRAM_HOST overrides it (libxgboost's server itself listens on every interface)"))
    dispatch: Literal["local", "deployments"] = Field(
        "local", description="local: market flows as subflows here; deployments: on each market's work pool")
    source: Path | None = None  # the file this was read from

    @field_validator("cadence")
    @classmethod
    def _cron(cls, cadence: str | None) -> str | None:
        if cadence is not None:
            from prefect.client.schemas.schedules import CronSchedule

            try:
                CronSchedule(cron=cadence)  # Prefect's own check: the schedule `fedpipe deploy` will create
            except ValidationError:
                raise ValueError(f"'{cadence}' is not a cron schedule (e.g. '0 3 * * 1' = Mondays 03:00)") from None
        return cadence

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
    for section, value in raw.items():  # `federation = false` must be named, not crash dict()
        if not isinstance(value, dict):
            raise ConfigError(source, section, f"must be a table ([{section}]), got {type(value).__name__}")
    doc = dict(raw.get("federation", {}))
    unknown = set(raw) - {"federation", "model", "usecase", "roi", "markets", "registry", "aggregator", "screening"}
    if unknown:
        raise ConfigError(source, sorted(unknown)[0], "unknown section (expected federation, model, usecase, roi, markets, registry, aggregator, screening)")
    doc.update(
        model=raw.get("model", {}),
        usecase_options=raw.get("usecase", {}),
        roi=raw.get("roi", {}),
        registry=raw.get("registry", {}),
        screening=raw.get("screening", {}),
        aggregator=raw.get("aggregator"),
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
    if config.secure_aggregation:
        _check_secure_aggregation(config, source)
    if config.strategy == "fedavg" and config.screening.holdout_check:
        raise ConfigError(source, "screening.holdout_check", "hold-out screening scores tree updates; it cannot "
                          "run with strategy 'fedavg' (set holdout_check = false or choose a tree strategy)")
    check_base_score(config, config.strategy, source)
    if importlib.util.find_spec(f"usecases.{config.usecase}") is None:
        raise ConfigError(source, "usecase", f"no use case named '{config.usecase}' (no usecases/{config.usecase}/)")
    _check_roi_keys(config, source)
    _check_usecase_keys(config, source)
    _check_model_params(config, source)
    base = source.parent
    markets = {
        name: m.model_copy(update={"data": _resolve(base, m.data), "state": _resolve(base, m.state) if m.state else None})
        for name, m in config.markets.items()
    }
    return config.model_copy(
        update={"markets": markets, "runs_dir": _resolve(Path.cwd(), config.runs_dir),
                "keys_dir": _resolve(Path.cwd(), config.keys_dir),
                "registry": config.registry.model_copy(update={"dir": _resolve(Path.cwd(), config.registry.dir)
                                                               if config.registry.dir else
                                                               _resolve(Path.cwd(), config.runs_dir).parent / "registry"})}
    )


def check_base_score(config: FederationConfig, strategy: str, source: Path | None = None) -> None:
    """Refuse a strategy in NEEDS_BASE_SCORE without ``[model] base_score`` (also for a ``--strategy`` override)."""
    if strategy in NEEDS_BASE_SCORE and "base_score" not in config.model:
        raise ConfigError(source or config.source or "(federation)", "model.base_score",
                          f"strategy '{strategy}' needs a base_score agreed up front in [model] (e.g. 0.5 for a "
                          "probability, a typical target value for regression): without it XGBoost sets each "
                          "market's intercept from that market's own labels, so every update would reveal its label "
                          "mean and the centre would add up trees grown on different intercepts")


def _check_secure_aggregation(config: FederationConfig, source: Path) -> None:
    """Secure aggregation needs three markets in every round it sums (with two, each could deduce the other's
    part from the total), so both the federation and the quorum must be at least three."""
    from fedpipe.secagg import MIN_PARTIES

    if len(config.markets) < MIN_PARTIES:
        raise ConfigError(source, "secure_aggregation", f"needs at least {MIN_PARTIES} markets, the federation has "
                          f"{len(config.markets)} ({', '.join(config.markets)}): with two, each market could "
                          "deduce the other's figures from the total")
    if config.quorum < MIN_PARTIES:
        raise ConfigError(source, "quorum", f"quorum {config.quorum} is below {MIN_PARTIES}, the fewest markets "
                          "secure aggregation can sum without one deducing another's part; set quorum >= 3")


def _check_usecase_keys(config: FederationConfig, source: Path) -> None:
    """A typo in ``[usecase]`` would silently fall back to a default: refuse keys the use case does not know."""
    from fedpipe.usecase import get_usecase

    usecase = get_usecase(config.usecase)
    known = set(usecase.defaults) | ({"task"} if usecase.tasks else set())
    for key in sorted(config.usecase_options):
        if key not in known:
            raise ConfigError(source, f"usecase.{key}", f"unknown option for use case '{config.usecase}' "
                                                        f"(known: {', '.join(sorted(known))})")
    try:
        usecase.for_task(config.usecase_options)
    except ConfigError as exc:
        raise ConfigError(source, "usecase.task", exc.problem) from None
    if usecase.check_options is not None:
        for market, settings in config.markets.items():
            options = {**usecase.defaults, **config.usecase_options, "subsample": settings.subsample,
                       "seed": config.seed}  # as the market will see them (fedpipe.market.MarketSite.options)
            try:
                usecase.check_options(market, options)
            except ConfigError as exc:
                raise ConfigError(source, f"usecase.{exc.field}", exc.problem) from None


def _check_model_params(config: FederationConfig, source: Path) -> None:
    """Refuse ``[model]`` keys XGBoost would ignore (it only warns, every round, in every market).

    One boosting step on four synthetic rows, then every key must appear in the booster's own configuration.
    """
    if not config.model:
        return
    import numpy as np
    import xgboost as xgb

    params = {**config.xgb_params(), "nthread": 1}
    try:
        booster = xgb.train(params, xgb.DMatrix(np.arange(8.0).reshape(4, 2), label=[0, 1, 0, 1]), 1)
    except xgb.core.XGBoostError as exc:
        raise ConfigError(source, "model", f"XGBoost refuses these parameters: {str(exc).splitlines()[0]}") from None
    known = booster.save_config()
    for key in sorted(config.model):
        if f'"{key}"' not in known:
            raise ConfigError(source, f"model.{key}", "not an XGBoost parameter (XGBoost would ignore it)")


def _check_roi_keys(config: FederationConfig, source: Path) -> None:
    """A ``[roi]`` key beyond the common ones must be one the use case knows (a key of its defaults)."""
    extra = sorted(config.roi.model_extra or {})
    if not extra:
        return
    from fedpipe.usecase import get_usecase

    known = set(get_usecase(config.usecase).defaults)
    for key in extra:
        if key not in known:
            raise ConfigError(source, f"roi.{key}", f"unknown ROI parameter for use case '{config.usecase}' "
                                                    f"(known: {', '.join(sorted(known))})")


def read_toml(path: Path, missing: str = "no such file") -> dict[str, Any]:
    """A TOML document, or ConfigError naming the file and whether it is missing, unreadable or not TOML."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, "(file)", missing) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "(file)", f"cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "(syntax)", f"not valid TOML: {exc}") from None


def load_federation(path: str | Path) -> FederationConfig:
    """Read and validate a federation TOML file."""
    path = Path(path)
    return parse_federation(read_toml(path), path.resolve())
