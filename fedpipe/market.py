"""What runs inside a market: load, validate, train, seal, evaluate.

This module (called from the market flow only) is the one code path that reads a market's rows. What it hands
to the exchange is a sealed envelope of trees or of metrics, plus a status note with no rows in it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xgboost as xgb

from fedpipe import contract, keys, sealing, trust
from fedpipe.aggregation import TreeUpdate, iteration_count, load_model_doc, new_trees, to_booster
from fedpipe.config import FederationConfig
from fedpipe.errors import MarketDataError, SealError
from fedpipe.federation_metrics import sufficient_stats
from fedpipe.strategies.personal import PERSONAL_TREES, personalise
from fedpipe.metrics import model_metrics, objective_kind
from fedpipe.storage import Exchange, atomic_write_bytes, atomic_write_json
from fedpipe.usecase import MarketData, UseCase, get_usecase

if TYPE_CHECKING:
    from fedpipe.site import SiteConfig

log = logging.getLogger(__name__)

EXPECTATIONS = Path(__file__).resolve().parents[1] / "expectations"


@dataclass(frozen=True)
class MarketSite:
    """A market's view of the federation: shared settings plus its own private data, keys and state."""

    federation: FederationConfig
    market: str
    exchange: Exchange
    local: "SiteConfig | None" = None  # the market machine's own config (fedpipe.site); overrides paths below

    @property
    def usecase(self) -> UseCase:
        return get_usecase(self.federation.usecase).for_task(self.federation.usecase_options)

    @property
    def data_dir(self) -> Path:
        return self.local.data if self.local else self.federation.markets[self.market].data

    @property
    def state_dir(self) -> Path:
        return (self.local.state if self.local else self.federation.market_state(self.market)) / self.federation.name

    @property
    def keys_dir(self) -> Path:
        return self.local.keys_dir if self.local else self.federation.keys_dir

    @property
    def suite_path(self) -> Path:
        return EXPECTATIONS / f"{self.usecase.suite}.json"

    def options(self) -> dict[str, Any]:
        return {
            **self.usecase.defaults,
            **self.federation.usecase_options,
            "subsample": self.federation.markets[self.market].subsample,
            "seed": self.federation.seed,
        }

    def identity(self) -> keys.Identity:
        keys.ensure_identity(self.keys_dir, self.market)
        return keys.load_identity(self.keys_dir, self.market)


def fingerprint(paths: list[Path]) -> str:
    """Content hash of a market's files: changes whenever one byte of its data changes."""
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(Path(path).name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def table_fingerprint(table: pd.DataFrame) -> str:
    """Content hash of a table as loaded (values, column names and dtypes)."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
    digest.update(json.dumps([(c, str(t)) for c, t in table.dtypes.items()]).encode())
    return digest.hexdigest()


def load_data(site: MarketSite) -> MarketData:
    return site.usecase.load(site.market, site.data_dir, site.options())


def validate_data(site: MarketSite, data: MarketData) -> list[contract.ValidationSummary]:
    """Run the contract on the training and the held-out table; raise the first failure as MarketDataError.

    A passing result is remembered against the tables' content hash and the suite, so later rounds on unchanged
    data skip Great Expectations; one changed value, or a new contract, validates again.
    """
    key = hashlib.sha256(json.dumps(
        [table_fingerprint(data.train), table_fingerprint(data.test), fingerprint([site.suite_path])],
        default=str).encode()).hexdigest()[:16]
    cached = site.state_dir / f"validation-{key}.json"
    if cached.exists():
        return [contract.ValidationSummary(**s) for s in json.loads(cached.read_text())]
    summaries = [
        # The file's name, not its path: this summary leaves the market, its location does not.
        contract.validate_table(getattr(data, table), suite_path=site.suite_path, market=site.market,
                                file=Path(data.sources.get(table, table)).name)
        for table in ("train", "test")
    ]
    for summary in summaries:
        if not summary.success:
            raise summary.error()
    atomic_write_json(cached, [s.to_dict() for s in summaries])
    return summaries


def fetch_signed(site: MarketSite, path: str, *, round_: int, kind: str = "global-model") -> bytes:
    """The bytes the centre posted at ``path``, checked against its signature (``path``.sig) with the aggregator's
    trusted keys (registered, or the market's key folder; rotated-out ones in grace). SealError if either is
    missing or the signature does not hold."""
    if not (site.exchange.exists(path) and site.exchange.exists(path + ".sig")):
        raise SealError(f"nothing signed by the aggregator at {path} (+ .sig) for round {round_}")
    raw = site.exchange.get(path)
    aggregator = trust.aggregator_keys(site.federation, keys_dir=site.keys_dir)
    sealing.verify_model(raw, site.exchange.get(path + ".sig"), federation=site.federation.name, round=round_,
                         signer=aggregator, kind=kind)
    return raw


def fetch_genesis(site: MarketSite) -> str:
    """The sha256 of the run's genesis document, checked against the aggregator's signature.

    It is the parent a market names before there is a global model (round 1; fedavg's round 0): new in every run,
    so what the market seals now cannot be passed off in another run.
    """
    path = site.exchange.genesis()
    if not (site.exchange.exists(path) and site.exchange.exists(path + ".sig")):
        raise SealError(f"no signed run genesis at {path} (+ .sig): the centre posts it when the run starts")
    try:
        raw = fetch_signed(site, path, round_=0, kind=sealing.GENESIS_KIND)
    except SealError as exc:
        raise SealError(f"run genesis refused: {exc}") from None
    return sealing.sha256_hex(raw)


def fetch_global_model(site: MarketSite, round_: int, visits: int = 0) -> tuple[dict | None, str]:
    """The global model this round starts from, checked against the aggregator's signature, and its sha256.

    With ``visits`` (cyclic strategy), the model as it stands after that many markets have added trees this round.
    Round 1 starts from no model: (None, the run's genesis hash), see :func:`fetch_genesis`.
    """
    if visits:
        from fedpipe.strategies.cyclic import visit_kind

        path, signed_round, kind = site.exchange.visit_model(round_, visits), round_, visit_kind(visits)
    elif round_ == 1:
        return None, fetch_genesis(site)  # not "": that would be the same in every run, so replayable across runs
    else:
        path, signed_round, kind = site.exchange.global_model(round_ - 1), round_ - 1, "global-model"
    raw = fetch_signed(site, path, round_=signed_round, kind=kind)
    return load_model_doc(raw), sealing.sha256_hex(raw)


def _matrix(site: MarketSite, table) -> xgb.DMatrix:
    features = site.usecase.features(table, site.options())
    return xgb.DMatrix(features, label=site.usecase.target(table, site.options()), feature_names=list(features.columns))


def _params(site: MarketSite) -> dict[str, Any]:
    return {**site.federation.xgb_params(), "objective": site.usecase.objective}


def train_update(site: MarketSite, data: MarketData, global_doc: dict | None) -> TreeUpdate:
    """Continue boosting from the global model on local rows; keep only the k new trees."""
    dtrain = _matrix(site, data.train)
    start = to_booster(global_doc) if global_doc is not None else None
    booster = xgb.train(_params(site), dtrain, num_boost_round=site.federation.trees_per_round, xgb_model=start)
    start_iteration = iteration_count(global_doc) if global_doc else 0
    return TreeUpdate(site.market, new_trees(booster, start_iteration), dtrain.num_row())


def seal_payload(site: MarketSite, round_: int, parent: str, payload: dict, kind: str = "update") -> bytes:
    aggregator = trust.aggregator_keys(site.federation, keys_dir=site.keys_dir)[0]  # seal to the current key
    return sealing.seal_update(
        json.dumps(payload, separators=(",", ":")).encode(),
        federation=site.federation.name, round=round_, market=site.market, parent=parent,
        recipient=aggregator, signer=site.identity(), kind=kind,
    )


def local_only_model(site: MarketSite, data: MarketData, n_trees: int) -> xgb.Booster:
    """What the market would have alone: boosting on its own rows only, cached by data hash.

    Trained once with the whole run's tree budget; each round compares against its first ``n_trees`` trees, the
    same number of boosting steps the global model has taken by then.
    """
    budget = max(n_trees, site.federation.rounds * site.federation.trees_per_round)
    key = hashlib.sha256(
        json.dumps([fingerprint(list(data.sources.values())), _params(site), site.options()],
                   sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    cached = site.state_dir / f"local-only-{key}.json"
    if cached.exists():
        booster = xgb.Booster()
        booster.load_model(str(cached))
        if booster.num_boosted_rounds() >= n_trees:
            return booster
    booster = xgb.train(_params(site), _matrix(site, data.train), num_boost_round=budget)
    atomic_write_bytes(cached, bytes(booster.save_raw("json")))
    return booster


def evaluate_models(site: MarketSite, data: MarketData, global_doc: dict, round_: int) -> dict[str, Any]:
    """Metrics and business value of the global and the local-only model on the market's held-out rows."""
    from fedpipe.models import is_linear

    if is_linear(global_doc):  # fedavg: the same three models, linear (fedpipe.fedavg_round)
        from fedpipe.fedavg_round import evaluate_linear

        return evaluate_linear(site, data, global_doc, round_)
    dtest = _matrix(site, data.test)
    y = site.usecase.target(data.test, site.options())
    steps = round_ * site.federation.trees_per_round
    models = {"federated": (to_booster(global_doc), None),
              "local_only": (local_only_model(site, data, steps), (0, steps)),
              # the global model plus a few trees on this market's rows (fedpipe.strategies.personal)
              "personalised": (personalise(to_booster(global_doc), _params(site), _matrix(site, data.train),
                                           PERSONAL_TREES), None)}
    result: dict[str, Any] = {"market": site.market, "train_rows": int(len(data.train))}
    for name, (booster, iterations) in models.items():
        def predict(table: pd.DataFrame, booster=booster, iterations=iterations) -> np.ndarray:
            matrix = xgb.DMatrix(site.usecase.features(table, site.options()))
            return booster.predict(matrix, iteration_range=iterations or (0, 0))

        score = booster.predict(dtest, iteration_range=iterations or (0, 0))
        result[name] = score_report(site, data.test, y, score, predict)
    return result


def score_report(site: MarketSite, test: pd.DataFrame, y: np.ndarray, score: np.ndarray, predict) -> dict[str, Any]:
    """One model's metrics, business value and sufficient statistics on the held-out rows (``predict`` scores
    other rows, for use cases whose value asks the model about alternatives)."""
    roi_params = site.federation.roi.model_dump()
    extra = {"predict": predict} if site.usecase.value_uses_model else {}
    return {
        "metrics": model_metrics(site.usecase.objective, y, score, roi_params["threshold"]),
        "value": site.usecase.business_value(test, np.asarray(score), roi_params, **extra),
        # counts and sums the federation's metrics are built from (fedpipe.federation_metrics); no rows
        "stats": sufficient_stats(objective_kind(site.usecase.objective), y, score, roi_params["threshold"]),
    }


def write_status(site: MarketSite, round_: int, status: str, **details: Any) -> None:
    """A short note for the centre: sealed, or excluded and why. Never rows."""
    note = {"market": site.market, "round": round_, "status": status, **details}
    site.exchange.put(site.exchange.status(round_, site.market), json.dumps(note, default=str).encode())
    atomic_write_json(site.state_dir / "last-status.json", note)


def describe_failure(site: MarketSite, exc: BaseException) -> dict[str, Any]:
    """Why a market sat a round out, for the centre: the message names file and field, not where data lives."""
    hide = lambda text: str(text).replace(str(site.data_dir), "<market data>")  # noqa: E731
    if isinstance(exc, MarketDataError):
        file = "<market data>" if Path(exc.file) == Path(site.data_dir) else Path(exc.file).name  # not its folder
        return {"reason": hide(exc), "file": file, "field": exc.field}
    return {"reason": hide(f"{type(exc).__name__}: {exc}")}
