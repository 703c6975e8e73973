"""The ``fedavg`` strategy in the round flow: a linear model whose weights the centre averages by row counts.

The maths is :mod:`fedpipe.strategies.fedavg`; this module is what the markets and the centre do with it.

1. **Round 0, the scaler.** Each market sends its feature statistics (row count, sums, sums of squares; for a
   regression also of the target). The centre pools them into the federation's mean and standard deviation and
   publishes zero weights on that scaler, signed, as the round-0 global model.
2. **Each round.** Each market runs ``EPOCHS`` epochs of SGD from the global weights on its standardised rows and
   sends ``{"coef", "intercept", "n_rows"}``; the centre checks every update (one bad update is dropped with the
   reason) and averages them by row count.
3. **Secure aggregation** (``[federation] secure_aggregation = true``). Both steps send only masked vectors
   (:func:`fedpipe.secure_round.mask_values`, purpose labels ``"scaler"`` and ``"weights"``): the statistics
   vector, and ``[n*coef..., n*intercept, n]``. The centre unmasks the sum (recovering a dropped market's masks
   from the survivors' reveals) and divides: it learns only totals, never one market's weights or row count.
   A market whose masked vector arrived but is unusable (wrong length) is not a dropout: its masks cannot be
   recovered without unmasking it, so that step's sum is not unmasked at all (fedpipe.secure_round.withhold_sum).

Evaluation (:func:`evaluate_linear`) mirrors fedpipe.market.evaluate_models: "federated" is the global model,
"local_only" the same model family trained on the market's own rows alone (own scaler, the same total epochs),
"personalised" the global weights after ``PERSONAL_EPOCHS`` more epochs on the market's rows.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fedpipe import models, secagg
from fedpipe.metrics import objective_kind
from fedpipe.strategies import fedavg

if TYPE_CHECKING:
    from fedpipe.market import MarketSite
    from fedpipe.usecase import MarketData

SCALER, WEIGHTS = "scaler", "weights"  # secagg purpose labels (the evaluation's is "evaluation")
EPOCHS = 5  # SGD epochs each market runs per round from the global weights
PERSONAL_EPOCHS = 2  # further local epochs when a market personalises the global weights


# --- in the market ---------------------------------------------------------------------------------


def _inputs(site: MarketSite, table: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    options = site.options()
    features = site.usecase.features(table, options)
    bad = [c for c in features.columns
           if not np.isfinite(pd.to_numeric(features[c], errors="coerce").to_numpy(dtype="float64")).all()]
    if bad:
        raise ValueError(f"market '{site.market}': fedavg needs complete numeric features; {bad} hold missing, "
                         "non-numeric or infinite values")
    return features, np.asarray(site.usecase.target(table, options), dtype="float64")


def _regression(objective: str) -> bool:
    return objective_kind(objective) == "regression"


def fetch_start_model(site: MarketSite, round_: int) -> tuple[dict, str]:
    """The linear global model round ``round_`` starts from (round 1: round 0's pooled scaler), signature checked."""
    from fedpipe import sealing
    from fedpipe.aggregation import load_model_doc
    from fedpipe.market import fetch_signed

    path = site.exchange.global_model(round_ - 1)
    if not site.exchange.exists(path):
        raise ValueError(f"market '{site.market}': no global model of round {round_ - 1} to start fedavg round "
                         f"{round_} from")
    raw = fetch_signed(site, path, round_=round_ - 1)
    doc = load_model_doc(raw)
    if not models.is_linear(doc):
        raise ValueError(f"market '{site.market}': the round {round_ - 1} global model is not a fedavg linear model")
    return doc, sealing.sha256_hex(raw)


def scaler_payload(site: MarketSite, data: MarketData) -> dict[str, Any]:
    """What a market sends before round 1: its feature statistics, or (secure) only a masked vector of them."""
    features, y = _inputs(site, data.train)
    stats = fedavg.feature_stats(features.to_numpy(dtype="float64"),
                                 y if _regression(site.usecase.objective) else None)
    names = [str(c) for c in features.columns]
    if not site.federation.secure_aggregation:
        return {**stats, "features": names}
    from fedpipe.secure_round import mask_values

    fields = ["n", *(f"sum[{c}]" for c in names), *(f"sumsq[{c}]" for c in names),
              *(["y_sum", "y_sumsq"] if "y_sum" in stats else [])]
    payload = mask_values(site, 0, fedavg.stats_vector(stats), kind=SCALER, label=SCALER, fields=fields, stats=stats)
    payload["secagg"]["features"] = names  # column names are the contract's, not the market's figures
    return payload


def weights_payload(site: MarketSite, data: MarketData, global_doc: dict, round_: int) -> dict[str, Any]:
    """A round's update: a few epochs of SGD from the global weights; (secure) only a masked vector of it."""
    features, y = _inputs(site, data.train)
    update = fedavg.local_update(global_doc, models.linear_inputs(global_doc, features), y, epochs=EPOCHS,
                                 seed=site.federation.seed + round_)
    if not site.federation.secure_aggregation:
        return update
    from fedpipe.secure_round import mask_values

    columns = global_doc.get("features") or []
    columns = columns if len(columns) == len(update["coef"]) else [str(i) for i in range(len(update["coef"]))]
    fields = [*(f"n_rows*coef[{c}]" for c in columns), "n_rows*intercept", "n_rows"]
    return mask_values(site, round_, fedavg.weights_vector(update), kind=WEIGHTS, label=WEIGHTS, fields=fields,
                       update=update)


def local_only_model(site: MarketSite, data: MarketData, epochs: int) -> dict:
    """What the market would have alone with the same model family: own scaler, ``epochs`` epochs from zero."""
    features, y = _inputs(site, data.train)
    x = features.to_numpy(dtype="float64")
    regression = _regression(site.usecase.objective)
    scaler = fedavg.pooled_scaler([fedavg.feature_stats(x, y if regression else None)])
    start = fedavg.initial_model(scaler, "regression" if regression else "classification", list(features.columns))
    update = fedavg.local_update(start, x, y, epochs=epochs, seed=site.federation.seed)
    return {**start, "coef": update["coef"], "intercept": update["intercept"]}


def personalise(site: MarketSite, data: MarketData, global_doc: dict) -> dict:
    """The global weights after ``PERSONAL_EPOCHS`` more epochs on this market's rows (global scaler kept)."""
    features, y = _inputs(site, data.train)
    update = fedavg.local_update(global_doc, models.linear_inputs(global_doc, features), y,
                                 epochs=PERSONAL_EPOCHS, seed=site.federation.seed)
    return {**global_doc, "coef": update["coef"], "intercept": update["intercept"]}


def evaluate_linear(site: MarketSite, data: MarketData, global_doc: dict, round_: int) -> dict[str, Any]:
    """Metrics, business value and sufficient statistics of the three linear models on the held-out rows."""
    from fedpipe.market import score_report

    options = site.options()
    features, y = _inputs(site, data.test)
    docs = {"federated": global_doc, "local_only": local_only_model(site, data, round_ * EPOCHS),
            "personalised": personalise(site, data, global_doc)}
    result: dict[str, Any] = {"market": site.market, "train_rows": int(len(data.train))}
    for name, doc in docs.items():
        def predict(table: pd.DataFrame, doc=doc) -> np.ndarray:
            return models.predict(doc, site.usecase.features(table, options))

        result[name] = score_report(site, data.test, y, models.predict(doc, features), predict)
    return result


# --- at the centre ---------------------------------------------------------------------------------


def objective(federation) -> str:
    """The use case's objective (classification for binary:*, regression for reg:*), as the centre reads it."""
    from fedpipe.usecase import get_usecase

    return get_usecase(federation.usecase).for_task(federation.usecase_options).objective



def _check_stats(payload: dict, names: list[str], with_target: bool) -> None:
    expected = {"n", "sum", "sumsq", "features"} | ({"y_sum", "y_sumsq"} if with_target else set())
    if not isinstance(payload, dict) or set(payload) != expected:
        raise ValueError(f"feature statistics must hold {sorted(expected)}, got "
                         f"{sorted(payload) if isinstance(payload, dict) else type(payload).__name__}")
    if payload["features"] != names:
        raise ValueError(f"statistics over columns {payload['features']}, the federation's are {names}")
    vector = fedavg.stats_vector(payload)
    if vector.size != 1 + 2 * len(names) + (2 if with_target else 0) or not np.isfinite(vector).all():
        raise ValueError("feature statistics must be finite, one sum and one sum of squares per column")
    if isinstance(payload["n"], bool) or not isinstance(payload["n"], int) or payload["n"] <= 0:
        raise ValueError(f"feature statistics report {payload['n']!r} rows")


def check_scaler_stats(opened: dict[str, dict], objective: str) -> tuple[dict[str, dict], dict[str, str]]:
    """Keep the markets' statistics that are well formed and over the columns most markets report."""
    common = Counter(tuple(p.get("features") or ()) for p in opened.values() if isinstance(p, dict)).most_common(1)
    names = list(common[0][0]) if common else []
    kept, rejected = {}, {}
    for market, payload in sorted(opened.items()):
        try:
            _check_stats(payload, names, _regression(objective))
        except (KeyError, TypeError, ValueError) as exc:
            rejected[market] = f"rejected feature statistics: {exc}"
            continue
        kept[market] = payload
    return kept, rejected


def check_weight_updates(global_doc: dict, opened: dict[str, dict]) -> tuple[dict[str, dict], dict[str, str]]:
    """Keep the updates that fit the global model (right length, finite, rows > 0); others dropped with why."""
    kept, rejected = {}, {}
    for market, payload in sorted(opened.items()):
        try:
            kept[market] = fedavg.check_update(global_doc, payload)
        except (KeyError, TypeError, ValueError) as exc:
            rejected[market] = f"rejected update: {exc}"
    return kept, rejected


def misfits(vectors: dict[str, np.ndarray], label: str, global_doc: dict | None) -> dict[str, str]:
    """Secure mode: masked vectors of the wrong length (the centre can check nothing else). Each is left out, but
    never recovered like a dropout (the centre holds it: the survivors' seeds would unmask it), so one such vector
    means no sum this step (fedpipe.secure_round.withhold_sum) rather than one market's weights exposed."""
    if label == WEIGHTS and global_doc is not None:
        size = len(global_doc["mean"]) + 2
    else:  # the scaler's length follows from the columns: the one most markets agree on
        size = Counter(v.size for v in vectors.values()).most_common(1)[0][0] if vectors else 0
    return {m: f"rejected {label}: masked vector of {v.size} values, expected {size}"
            for m, v in sorted(vectors.items()) if v.size != size}


def summed(total: np.ndarray, markets: list[str], **extra: Any) -> dict[str, dict]:
    """Secure mode: the survivors' unmasked sum stands for their joint contribution (no market's own row count)."""
    return {market: {"n_rows": None, "total": np.asarray(total, dtype="float64").tolist(), **extra}
            for market in markets}


def unmask(vectors: dict[str, np.ndarray], roster: list[str], revealed: dict[str, dict]) -> np.ndarray:
    """The survivors' plain total, with the masks of the roster markets missing from it removed."""
    return secagg.unmask_sum(vectors, roster=roster, revealed={m: p.get("seeds", {}) for m, p in revealed.items()})


def initial_model(payloads: dict[str, dict], objective: str) -> dict:
    """Round 0's global model: zero weights on the federation's pooled scaler (plain or summed statistics)."""
    regression = _regression(objective)
    first = next(iter(payloads.values()))
    if "total" in first:  # secure: one unmasked total
        stats = [fedavg.stats_from_vector(np.asarray(first["total"]), with_target=regression)]
    else:
        stats = [{k: v for k, v in p.items() if k != "features"} for p in payloads.values()]
    return fedavg.initial_model(fedavg.pooled_scaler(stats), "regression" if regression else "classification",
                                first.get("features"))


def aggregate_weights(global_doc: dict, payloads: dict[str, dict]) -> dict:
    """The next global model: the row-weighted average of the updates, or (secure) the unmasked sum divided."""
    if global_doc is None or not models.is_linear(global_doc):
        raise ValueError("fedavg aggregates onto a linear global model (round 0's pooled scaler); there is none")
    first = next(iter(payloads.values()))
    if "total" in first:
        return fedavg.from_weight_sum(global_doc, np.asarray(first["total"]))
    return fedavg.average_weights(global_doc, [payloads[m] for m in sorted(payloads)])
