"""Quality benchmark: every aggregation strategy against local-only and pooled references, on every use case.

For each federation file in federations/ (one per use case; predictive maintenance runs both its tasks, the
failure-within-H classifier and capped-RUL regression), it trains with the federation's own rounds, trees per round
and XGBoost parameters:

- ``local_only``: each market alone, rounds x trees boosting steps (reference, computed only here);
- ``pooled``: one model on every market's rows together, same steps, binned at the exact quantiles of those rows
  (fedpipe.strategies.agreed_cuts, the cut points the federation agrees on): it depends on the rows alone;
- ``pooled_sketch``, ``pooled_sketch_order_1`` … ``_{ORDERS-1}``: the pooled model binned by XGBoost's own
  approximate quantile sketch instead, with its rows in ORDERS orders. That sketch depends on row order, so their
  range (``sketch_lo``..``sketch_hi`` in quality.md) is how far a default pooled XGBoost moves by cut points alone;
- ``bagging``, ``cyclic``: the strategies' aggregation functions, round by round, as the round flow applies them;
- ``histogram``: XGBoost's federated collective as the strategy runs it (agreed cut points), one worker process per
  market, mutual TLS on loopback;
- ``histogram_sketch``: the same with XGBoost's merged per-market sketches instead of agreed cut points;
- ``fedavg``: the linear model, federated standardisation, weights averaged by rows;
- ``personalised``: the histogram model plus 5 local trees per market;
- ``chosen``: per market the model it should deploy: local-only, a federated model or personalised, chosen by
  FOLDS-fold validation inside the market's training rows (``validation_split``: its engines in FOLDS groups, each
  left out in turn; or, for a well, FOLDS forward folds, each the next depth block with only the rows above it to
  fit on; every method is retrained per fold and scored on it). A market leaves its own model only for one that
  beats it on every fold (the best mean among those); its gain over local-only on the held-out rows comes with a
  95 % paired bootstrap interval (``gain_interval``: whole engines, or 50-row depth blocks, drawn with replacement);
- ``best_federated``: the best mean over the folds among the federated models only (no local-only fallback).

The ``federation`` row of ``chosen`` and ``best_federated`` scores what the markets deploy: each market's own pick,
pooled by sufficient statistics.

Each market is scored on its own held-out rows; ``federation`` rows come from summed sufficient statistics.
Writes benchmarks/results/quality.csv (usecase, market, method, metric, value; the validation scores the choices
were made on as ``fold<k>:<method>`` and ``validation:<method>``, their mean over the folds) and quality.md;
prints the table.

    python benchmarks/quality.py [--rounds N] [--trees K] [--only predictive_maintenance]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.metrics import roc_auc_score, root_mean_squared_error
from sklearn.model_selection import TimeSeriesSplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fedpipe.aggregation import TreeUpdate, aggregate_bagging, new_trees, to_booster  # noqa: E402
from fedpipe.central import markdown_table  # noqa: E402
from fedpipe.config import load_federation  # noqa: E402
from fedpipe.fedavg_round import EPOCHS  # noqa: E402
from fedpipe.federation_metrics import federation_metrics, sufficient_stats  # noqa: E402
from fedpipe.metrics import model_metrics, objective_kind  # noqa: E402
from fedpipe.strategies import agreed_cuts, cyclic, fedavg, histogram, personal  # noqa: E402
from fedpipe.tls import create_federation_tls  # noqa: E402
from fedpipe.usecase import get_usecase  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
HEADLINE = {"classification": ("auc", "log_loss"), "regression": ("rmse", "mae")}
TOLERANCE = 0.005  # histogram within 0.5 % of pooled
FOLDS = 3  # validation folds inside each market's training rows, to choose chosen / best_federated
FEDERATED = ["bagging", "cyclic", "histogram", "fedavg", "personalised"]
ORDERS = 5  # the sketch-binned pooled model is trained on this many row orders (the first as loaded)
DRAWS = 1000  # bootstrap draws for the interval on chosen's gain over local-only
BLOCK_ROWS = 50  # a well's held-out rows are resampled in depth blocks this long: neighbouring rows are alike


def validation_split(train: pd.DataFrame, folds: int, fold: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit, validation) for fold ``fold`` of ``folds`` of a market's training rows, shaped like its held-out rows.

    Whole engines when the table has ``unit`` (C-MAPSS: held-out rows are other engines; the engines are shuffled
    with ``seed`` and dealt into ``folds`` groups). Otherwise the rows are in depth order and the held-out section
    lies below them, so the folds look forward too (scikit-learn's ``TimeSeriesSplit``): fold ``fold`` validates on
    the next depth block and fits on every row above it only, never on rows below.
    """
    if "unit" in train.columns:
        units = np.random.default_rng(seed).permutation(np.unique(train["unit"].to_numpy()))
        held = train["unit"].isin(np.array_split(units, folds)[fold]).to_numpy()
        fit = ~held
    else:
        if len(train) <= folds:
            raise ValueError(f"{len(train)} training rows cannot make {folds} forward validation folds")
        fit_rows, held_rows = list(TimeSeriesSplit(n_splits=folds).split(train))[fold]
        fit, held = np.isin(np.arange(len(train)), fit_rows), np.isin(np.arange(len(train)), held_rows)
    if not fit.any() or not held.any():
        raise ValueError(f"validation fold {fold + 1}/{folds} of {len(train)} training rows leaves nothing to fit "
                         f"or to validate on")
    return train[fit].reset_index(drop=True), train[held].reset_index(drop=True)


class Market:
    """One market's matrices, built by the market's own loader (the benchmark plays every market).

    ``fold``: train on the fit part of that validation fold of the training rows and score on its validation part
    instead of the held-out rows.
    """

    def __init__(self, config: str, name: str, task: str | None, fold: int | None = None):
        federation = load_federation(config)
        options = {**federation.usecase_options, **({"task": task} if task else {})}
        usecase = get_usecase(federation.usecase).for_task(options)
        opts = {**usecase.defaults, **options, "subsample": federation.markets[name].subsample,
                "seed": federation.seed}
        data = usecase.load(name, federation.markets[name].data, opts)
        train, test = data.train, data.test
        if fold is not None:
            train, test = validation_split(data.train, FOLDS, fold, federation.seed)
        self.name, self.kind, self.objective = name, objective_kind(usecase.objective), usecase.objective
        self.params = {**federation.xgb_params(), "objective": usecase.objective, "nthread": 1}
        x_train, x_test = usecase.features(train, opts), usecase.features(test, opts)
        self.y_train, self.y_test = usecase.target(train, opts), usecase.target(test, opts)
        self.x_train, self.x_test = x_train.to_numpy(), x_test.to_numpy()
        self.dtrain = xgb.DMatrix(x_train, label=self.y_train)
        self.dtest = xgb.DMatrix(x_test, label=self.y_test)
        # what the bootstrap resamples whole: an engine's rows, or a block of a well's consecutive depths
        self.groups = test["unit"].to_numpy() if "unit" in test.columns else np.arange(len(test)) // BLOCK_ROWS


def _hist_worker(config, names, task, rank, port, tls_folder, n_trees, out, fold, cuts):
    market = Market(config, names[rank], task, fold)
    tls = histogram.FederationTls(Path(tls_folder))
    booster = histogram.train_worker(market.params, market.x_train, market.y_train, n_trees,
                                     histogram.communicator_args(f"127.0.0.1:{port}", len(names), rank, tls,
                                                                 market.name), cuts=cuts)
    Path(out).write_bytes(bytes(booster.save_raw("json")))


def train_histogram(config: str, names: list[str], task: str | None, n_trees: int, fold: int | None = None,
                    cuts: str = "agreed") -> xgb.Booster:
    """Exact federated hist boosting: a server process and one worker process per market, mutual TLS."""
    with tempfile.TemporaryDirectory() as tmp:
        tls = create_federation_tls(Path(tmp) / "tls", names)
        port = histogram.free_port()
        ctx = multiprocessing.get_context("spawn")
        with histogram.federated_server(len(names), port, tls, timeout_s=600):
            workers = [ctx.Process(target=_hist_worker, args=(config, names, task, rank, port, str(tls.folder),
                                                             n_trees, f"{tmp}/{name}.json", fold, cuts))
                       for rank, name in enumerate(names)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            if any(w.exitcode != 0 for w in workers):
                raise RuntimeError(f"histogram workers exit codes {[w.exitcode for w in workers]}")
        models = [Path(f"{tmp}/{name}.json").read_bytes() for name in names]
    if len(set(models)) != 1:
        raise RuntimeError("histogram workers ended with different models")
    booster = xgb.Booster()
    booster.load_model(bytearray(models[0]))
    return booster


def train_bagging(markets, rounds, k, append=False):
    doc = None
    for _ in range(rounds):
        updates = []
        for m in sorted(markets, key=lambda m: m.name):
            start = to_booster(doc) if doc else None
            booster = xgb.train(m.params, m.dtrain, num_boost_round=k, xgb_model=start)
            update = TreeUpdate(m.name, new_trees(booster, booster.num_boosted_rounds() - k), m.dtrain.num_row())
            if append:  # cyclic: the next market starts from the model with this market's trees
                doc = cyclic.append_trees(doc, update)
            else:
                updates.append(update)
        if not append:
            doc = aggregate_bagging(doc, updates)
    return to_booster(doc)


def train_fedavg(markets, rounds, epochs=EPOCHS, seed=0):  # as many epochs as the round flow runs
    kind = markets[0].kind
    stats = [fedavg.feature_stats(m.x_train, m.y_train if kind == "regression" else None) for m in markets]
    model = fedavg.initial_model(fedavg.pooled_scaler(stats), kind)
    for r in range(rounds):
        updates = [fedavg.local_update(model, m.x_train, m.y_train, epochs=epochs, seed=seed + r) for m in markets]
        model = fedavg.average_weights(model, updates)
    return model


def _pooled_rows(markets, order=None) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.vstack([m.x_train for m in markets]), np.concatenate([m.y_train for m in markets])
    return (x, y) if order is None else (x[order], y[order])


def score_methods(config: str, task: str | None, rounds: int, k: int,
                  fold: int | None = None) -> tuple[pd.DataFrame, dict]:
    """Train every method on each market's training rows (or on the fit part of validation fold ``fold``) and
    score it on each market's held-out rows (or that fold's validation rows): rows (usecase, market, method,
    metric, value)."""
    federation = load_federation(config)
    names = list(federation.markets)
    markets = [Market(config, name, task, fold) for name in names]
    kind, steps = markets[0].kind, rounds * k
    label = federation.usecase + (f":{task}" if task else "")
    held_out = fold is None
    part = "test" if held_out else f"fold {fold + 1}/{FOLDS}"
    timings, predictions = {}, {}

    def timed(name, fn):
        started = time.perf_counter()
        result = fn()
        timings[name] = time.perf_counter() - started
        print(f"  {part:<10} {name:<17} {timings[name]:6.1f} s", flush=True)
        return result

    local = timed("local_only", lambda: {m.name: xgb.train(m.params, m.dtrain, steps) for m in markets})
    predictions["local_only"] = {m.name: local[m.name].predict(m.dtest) for m in markets}
    params, bins = markets[0].params, markets[0].params.get("max_bin", 256)
    if held_out:  # the references, only on the held-out rows
        pooled = timed("pooled", lambda: xgb.train(params, agreed_cuts.binned_matrix(*_pooled_rows(markets), bins),
                                                   steps))
        predictions["pooled"] = {m.name: pooled.predict(xgb.DMatrix(m.x_test)) for m in markets}
        rows = sum(m.dtrain.num_row() for m in markets)
        for i in range(ORDERS):
            order = np.random.default_rng(federation.seed + i).permutation(rows) if i else None
            name = f"pooled_sketch_order_{i}" if i else "pooled_sketch"
            x, y = _pooled_rows(markets, order)
            sketched = timed(name, lambda: xgb.train(params, xgb.DMatrix(x, label=y), steps))
            predictions[name] = {m.name: sketched.predict(xgb.DMatrix(m.x_test)) for m in markets}
    for name, fn in (("bagging", lambda: train_bagging(markets, rounds, k)),
                     ("cyclic", lambda: train_bagging(markets, rounds, k, append=True)),
                     ("histogram", lambda: train_histogram(config, names, task, steps, fold))):
        model = timed(name, fn)
        predictions[name] = {m.name: model.predict(m.dtest) for m in markets}
        if name == "histogram":
            hist_model = model
    linear = timed("fedavg", lambda: train_fedavg(markets, rounds))
    predictions["fedavg"] = {m.name: fedavg.predict(linear, m.x_test) for m in markets}
    extra = personal.PERSONAL_TREES  # the local trees a market adds when it personalises, as in the round flow
    own = timed("personalised", lambda: {m.name: personal.personalise(hist_model, m.params, m.dtrain, extra)
                                         for m in markets})
    predictions["personalised"] = {m.name: own[m.name].predict(m.dtest) for m in markets}
    check = {}
    if held_out:
        sketch = timed("histogram_sketch", lambda: train_histogram(config, names, task, steps, cuts="sketch"))
        predictions["histogram_sketch"] = {m.name: sketch.predict(m.dtest) for m in markets}
        # same cut points as pooled: any difference would be a federated-training defect
        check = {m.name: float(np.abs(predictions["histogram"][m.name] - predictions["pooled"][m.name]).max())
                 for m in markets}

    rows = []
    for method, by_market in predictions.items():
        for m in markets:
            for metric, value in model_metrics(m.objective, m.y_test, by_market[m.name]).items():
                if metric != "rows":
                    rows.append((label, m.name, method, metric, value))
        fed = federation_metrics([sufficient_stats(kind, m.y_test, by_market[m.name]) for m in markets])
        rows += [(label, "federation", method, metric, v) for metric, v in fed.items() if metric != "rows"]
    table = pd.DataFrame(rows, columns=["usecase", "market", "method", "metric", "value"])
    held = {m.name: (m.y_test, m.groups) for m in markets}
    return table, {"timings": timings, "pooled_cuts_max_abs_diff": check, "predictions": predictions, "held": held,
                   "kind": kind}


def gain_interval(metric: str, y: np.ndarray, chosen: np.ndarray, local: np.ndarray, groups: np.ndarray,
                  draws: int = DRAWS, seed: int = 0) -> tuple[float, float, float]:
    """Chosen's gain over local-only on the held-out rows (positive = better) and its 95 % paired bootstrap
    interval: whole groups (engines, or depth blocks) are drawn with replacement and both models scored on each draw.
    """
    def score(rows):
        if metric == "auc":
            return roc_auc_score(y[rows], chosen[rows]) - roc_auc_score(y[rows], local[rows])
        return root_mean_squared_error(y[rows], local[rows]) - root_mean_squared_error(y[rows], chosen[rows])

    _, index = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(index == g) for g in range(index.max() + 1)]
    rng, gains = np.random.default_rng(seed), []
    for _ in range(draws):
        rows = np.concatenate([members[g] for g in rng.integers(len(members), size=len(members))])
        if metric != "auc" or len(np.unique(y[rows])) == 2:  # AUC needs both classes in the draw
            gains.append(score(rows))
    lo, hi = np.percentile(gains, [2.5, 97.5])
    return float(score(np.arange(len(y)))), float(lo), float(hi)


def _better(a, b, metric: str):
    return a > b if metric == "auc" else a < b


def choose(folds: pd.DataFrame, candidates: list[str], metric: str, keep: str | None = None) -> str:
    """The method to deploy from per-fold validation scores (index: fold, columns: method).

    Without ``keep``: the best mean over the folds. With ``keep`` (the market's own model): a candidate replaces it
    only if it beats it on every fold; the best mean among those, else ``keep``.
    """
    mean = folds[candidates].mean()
    if keep is not None:
        wins = [c for c in candidates if c == keep or all(_better(folds[c], folds[keep], metric))]
        mean = mean[wins]
    return str(mean.idxmax() if metric == "auc" else mean.idxmin())


def run_usecase(config: str, task: str | None, rounds: int | None, trees: int | None) -> pd.DataFrame:
    """Every method on the held-out rows, plus ``chosen`` and ``best_federated``, picked on validation folds."""
    federation = load_federation(config)
    rounds, k = rounds or federation.rounds, trees or federation.trees_per_round
    label = federation.usecase + (f":{task}" if task else "")
    print(f"\n== {label}: {len(federation.markets)} markets, {rounds} rounds x {k} trees", flush=True)
    table, info = score_methods(config, task, rounds, k)
    predictions, held, kind = info.pop("predictions"), info.pop("held"), info["kind"]
    folds, timings = [], {f"test:{n}": t for n, t in info["timings"].items()}
    for fold in range(FOLDS):
        scores, fold_info = score_methods(config, task, rounds, k, fold)
        folds.append(scores.assign(fold=fold))
        timings.update({f"fold{fold + 1}:{n}": t for n, t in fold_info["timings"].items()})
    validation = pd.concat(folds, ignore_index=True)
    main = "auc" if "auc" in set(table.metric) else "rmse"
    for pick, candidates, keep in (("chosen", ["local_only", *FEDERATED], "local_only"),
                                   ("best_federated", FEDERATED, None)):
        picks = {}
        for market in federation.markets:
            scores = validation[(validation.market == market) & (validation.metric == main)]
            best = picks[market] = choose(scores.pivot_table(index="fold", columns="method", values="value"),
                                          candidates, main, keep)
            picked = table[(table.market == market) & (table.method == best)].assign(method=pick)
            table = pd.concat([table, picked], ignore_index=True)
            table.loc[len(table)] = (label, market, pick, "choice:" + best, np.nan)
            if pick == "chosen" and market in held:
                y, groups = held[market]
                gain = gain_interval(main, np.asarray(y), predictions[best][market],
                                     predictions["local_only"][market], groups)
                for name, value in zip(GAIN, gain):
                    table.loc[len(table)] = (label, market, pick, name, value)
        # the federation's figure for what the markets deploy: each market's own pick, from summed statistics
        fed = federation_metrics([sufficient_stats(kind, held[m][0], predictions[best][m])
                                  for m, best in picks.items()])
        for metric, value in fed.items():
            if metric != "rows":
                table.loc[len(table)] = (label, "federation", pick, metric, value)
        table.loc[len(table)] = (label, "federation", pick, "choice:per market", np.nan)
    mean = validation.groupby(["usecase", "market", "method", "metric"], as_index=False, sort=False).value.mean()
    per_fold = validation.assign(method=[f"fold{f + 1}:{m}" for f, m in zip(validation.fold, validation.method)])
    table = pd.concat([table, mean.assign(method="validation:" + mean.method), per_fold.drop(columns="fold")],
                      ignore_index=True)
    for market, diff in info["pooled_cuts_max_abs_diff"].items():
        table.loc[len(table)] = (label, market, "histogram", "max_abs_diff_vs_pooled", diff)
    table.attrs.update(info, timings=timings)
    return table


SKETCH = "pooled_sketch"
GAIN = ("gain_vs_local_only", "gain_lo95", "gain_hi95")  # chosen's gain over local-only and its bootstrap interval


def sketch_columns(v: pd.DataFrame) -> list[str]:
    return [c for c in v.columns if c == SKETCH or c.startswith(SKETCH + "_order_")]


def pooled_range(v: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per market, the lowest and highest headline metric of the sketch-binned pooled model over its row orders."""
    columns = sketch_columns(v)
    return v[columns].min(axis=1), v[columns].max(axis=1)


def _gap(a: pd.Series, b: pd.Series) -> pd.Series:
    return (a - b).abs() / b.abs()


def _worse(v: pd.DataFrame, method: str, markets: list[str], main: str) -> list[str]:
    """Markets where ``method`` is worse than local-only on the headline metric."""
    return [m for m in markets if _better(v.loc[m, "local_only"], v.loc[m, method], main)]


def targets(table: pd.DataFrame, data_poor: dict[str, str]) -> list[str]:
    """The issue's targets, each stated with the figures measured."""
    lines = []
    for label, part in table.groupby("usecase", sort=False):
        kind = "classification" if "auc" in set(part.metric) else "regression"
        main, _ = HEADLINE[kind]
        v = part[part.metric == main].pivot_table(index="market", columns="method", values="value")
        markets = [m for m in v.index if m != "federation"]
        gap = _gap(v["histogram"], v["pooled"]).loc[markets]
        worst = gap.idxmax()
        lines.append(f"- **{label}** histogram within 0.5 % of pooled ({main}) on every market: "
                     f"{'MET' if (gap <= TOLERANCE).all() else 'MISSED'} — largest gap {100 * gap[worst]:.2f} % on "
                     f"{worst} (histogram {v.loc[worst, 'histogram']:.4f}, pooled {v.loc[worst, 'pooled']:.4f}).")
        diff = part[(part.method == "histogram") & (part.metric == "max_abs_diff_vs_pooled")]
        if len(diff):
            lines.append(f"  the same model: max |histogram's prediction - pooled's| {diff.value.max():.2g} over every "
                         f"market's held-out rows (both binned at the agreed exact quantiles).")
        if SKETCH in v.columns:
            lo, hi = pooled_range(v)
            spread = ((hi - lo) / v[SKETCH].abs()).loc[markets]
            median = v[sketch_columns(v)].median(axis=1)
            off, pooled_off = _gap(v["histogram"], median).loc[markets], _gap(v["pooled"], median).loc[markets]
            line = (f"  against pooled binned by XGBoost's own sketch instead, the same rows in {ORDERS} orders: "
                    f"that model moves up to {100 * spread.max():.2f} % on {spread.idxmax()} "
                    f"({lo[spread.idxmax()]:.4f}..{hi[spread.idxmax()]:.4f}) by row order alone; histogram is "
                    f"{100 * off.max():.2f} % off its median on {off.idxmax()} (pooled with exact quantiles "
                    f"{100 * pooled_off.max():.2f} % on {pooled_off.idxmax()})")
            if "histogram_sketch" in v.columns:
                old = _gap(v["histogram_sketch"], v[SKETCH]).loc[markets]
                line += (f"; histogram on XGBoost's merged per-market sketches is {100 * old.max():.2f} % off "
                         f"its first order on {old.idxmax()}")
            lines.append(line + ".")
        gains = part[(part.method == "chosen") & part.metric.isin(GAIN)].pivot_table(
            index="market", columns="metric", values="value")

        places = 5 if main == "auc" else 3  # AUC gains are small: enough digits that none reads as +0.0000

        def signed(x):
            return f"{x:+.{places}f}"

        def interval(m):
            if m not in gains.index:
                return ""
            g = gains.loc[m]
            return f" (gain {signed(g.gain_vs_local_only)}, 95 % interval {signed(g.gain_lo95)}..{signed(g.gain_hi95)})"

        worse = _worse(v, "chosen", markets, main)
        detail = "; ".join(f"{m} {v.loc[m, 'chosen']:.4f} vs {v.loc[m, 'local_only']:.4f}{interval(m)}"
                           for m in worse)
        lines.append(f"  best choice per market (local-only, federated or personalised; picked on {FOLDS} validation "
                     f"folds) at least as good as local-only ({main}) on every market: "
                     f"{'MET' if not worse else 'MISSED on ' + detail}.")
        if len(gains):
            lines.append(f"  chosen's gain over local-only ({main}, positive = better), 95 % paired bootstrap "
                         f"interval over held-out engines or depth blocks: "
                         + "; ".join(f"{m} {signed(g.gain_vs_local_only)} "
                                     f"({signed(g.gain_lo95)}..{signed(g.gain_hi95)})" for m, g in gains.iterrows())
                         + ".")
        poor = data_poor.get(label.split(":")[0])
        if poor in v.index and SKETCH in v.columns:
            # "clearly": the gain is larger than the pooled model's own order-to-order spread there, and its
            # bootstrap interval lies above zero, so neither cut points nor the held-out sample explain it
            lo, hi = pooled_range(v)
            gain = (v.loc[poor, "chosen"] - v.loc[poor, "local_only"]) * (1 if main == "auc" else -1)
            noise = hi[poor] - lo[poor]
            sure = poor not in gains.index or gains.loc[poor, "gain_lo95"] > 0
            lines.append(f"  clearly better on the data-poor market {poor} (gain above the sketch-binned pooled "
                         f"model's spread there, {noise:.4f}, and its 95 % interval above zero): "
                         f"{'MET' if gain > noise and sure else 'MISSED'} — chosen {v.loc[poor, 'chosen']:.4f} vs "
                         f"local-only {v.loc[poor, 'local_only']:.4f} ({main}){interval(poor)}.")
        worse = _worse(v, "best_federated", markets, main)
        detail = "; ".join(f"{m} {v.loc[m, 'best_federated']:.4f} vs {v.loc[m, 'local_only']:.4f}" for m in worse)
        lines.append(f"  federated models only (`best_federated`, no local-only fallback), at least as good as "
                     f"local-only: {'on every market' if not worse else 'not on ' + detail}.")
    return lines


def main(argv=None) -> int:
    usecases = sorted({load_federation(c).usecase for c in (REPO / "federations").glob("*.toml")})
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Writes benchmarks/results/quality.csv and quality.md (replacing them, also with --only) and prints "
               "the table with its targets. About 6 min on 2 cores with the federation files' settings.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, help="override each federation's rounds (at least 1)")
    parser.add_argument("--trees", type=int, help="override each federation's trees per round (at least 1)")
    parser.add_argument("--only", choices=usecases, help="run only this use case (predictive_maintenance runs both "
                                                         "its tasks)")
    args = parser.parse_args(argv)
    for name in ("rounds", "trees"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    histogram.require_federated_plugin()
    runs, data_poor, started = [], {}, time.perf_counter()
    for config in sorted((REPO / "federations").glob("*.toml")):
        federation = load_federation(config)
        if args.only and federation.usecase != args.only:
            continue
        poorest = min(federation.markets.items(), key=lambda kv: kv[1].subsample)
        if poorest[1].subsample < 1:
            data_poor[federation.usecase] = poorest[0]
        usecase = get_usecase(federation.usecase)
        for task in [None, *usecase.tasks]:
            runs.append(run_usecase(str(config), task, args.rounds, args.trees))
    table = pd.concat(runs, ignore_index=True)
    elapsed = time.perf_counter() - started
    RESULTS.mkdir(parents=True, exist_ok=True)
    values = table.dropna(subset=["value"])
    values.to_csv(RESULTS / "quality.csv", index=False)
    md = ["# Quality benchmark", "", f"`python benchmarks/quality.py` (xgboost {xgb.__version__}, "
          f"{elapsed / 60:.1f} min on {os.cpu_count()} cores); each market scored on its own held-out rows; "
          "`federation` = from summed sufficient statistics; `pooled` = one model on every market's rows, binned "
          "at their exact quantiles (the cut points the histogram strategy agrees on); `sketch_lo`..`sketch_hi` = "
          f"the range of the pooled model binned by XGBoost's own quantile sketch, its rows in {ORDERS} orders; "
          "`histogram_sketch` = histogram on XGBoost's merged per-market sketches; `chosen` = the model each market "
          f"should deploy, picked on {FOLDS} validation folds of its training rows (whole engines left out in turn, "
          "or a well's next depth block fitted on the rows above it; every method retrained per fold): a federated "
          "or personalised model replaces local-only only if it beats it on every fold; its gain over local-only "
          "comes with a 95 % paired bootstrap interval (Targets); `best_federated` = the best mean over the folds "
          "among the federated models only; their `federation` row pools each market's own pick.", ""]
    for label, part in values.groupby("usecase", sort=False):
        main = "auc" if "auc" in set(part.metric) else "rmse"
        wide = part[part.metric == main].pivot_table(index="market", columns="method", values="value")
        wide["sketch_lo"], wide["sketch_hi"] = pooled_range(wide)
        order = ["local_only", "pooled", "sketch_lo", "sketch_hi", "bagging", "cyclic", "histogram",
                 "histogram_sketch", "fedavg", "personalised"]
        for pick, column in (("chosen", "chosen_is"), ("best_federated", "best_is")):
            choice = table[(table.usecase == label) & (table.method == pick) & table.metric.str.startswith("choice:")]
            wide[column] = choice.set_index("market").metric.str.removeprefix("choice:")
            order += [pick, column]
        md += [f"## {label} — {main} ({'higher' if main == 'auc' else 'lower'} is better)", "",
               markdown_table(wide[[c for c in order if c in wide.columns]].reset_index()), ""]
    md += ["## Targets", "", *targets(values, data_poor), ""]
    (RESULTS / "quality.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
