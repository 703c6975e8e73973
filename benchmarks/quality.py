"""Quality benchmark: every aggregation strategy against local-only and pooled references, on every use case.

For each federation file in federations/ (one per use case; predictive maintenance runs both its tasks, the
failure-within-H classifier and capped-RUL regression), it trains with the federation's own rounds, trees per round
and XGBoost parameters:

- ``local_only``: each market alone, rounds x trees boosting steps (reference, computed only here);
- ``pooled``: one model on every market's rows together, same steps (reference, computed only here);
- ``pooled_order_1`` … ``pooled_order_{ORDERS-1}``: the same pooled model with its rows in other orders. XGBoost's
  quantile sketch (the ``max_bin`` cut points) depends on row order, so their range (``pooled_lo``..``pooled_hi``
  in quality.md, ``pooled`` included) is how far the pooled reference itself moves by cut points alone;
- ``bagging``, ``cyclic``: the strategies' aggregation functions, round by round, as the round flow applies them;
- ``histogram``: XGBoost's federated collective, one worker process per market, mutual TLS on loopback;
- ``fedavg``: the linear model, federated standardisation, weights averaged by rows;
- ``personalised``: the histogram model plus 5 local trees per market;
- ``best_federated``: per market the best of the federated models above, chosen on a validation split carved from
  that market's training rows (``validation_split``: 20 % of its engines, or a well's deepest 20 % of training
  rows), then scored on its held-out rows: every method is trained a second time on the rest of the training rows
  and scored on the validation rows to make the choice;
- ``chosen``: the same validation choice with ``local_only`` among the candidates (a market may keep its own model).

Each market is scored on its own held-out rows; ``federation`` rows come from summed sufficient statistics.
The histogram check also trains ``histogram`` once with the pooled model's cut points in every worker (benchmark
only: a real federation has no pooled data) and reports how far it is from ``pooled``.
Writes benchmarks/results/quality.csv (usecase, market, method, metric, value; the validation-split scores the
choices were made on as ``validation:<method>``) and quality.md; prints the table.

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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fedpipe.aggregation import TreeUpdate, aggregate_bagging, new_trees, to_booster  # noqa: E402
from fedpipe.central import markdown_table  # noqa: E402
from fedpipe.config import load_federation  # noqa: E402
from fedpipe.fedavg_round import EPOCHS  # noqa: E402
from fedpipe.federation_metrics import federation_metrics, sufficient_stats  # noqa: E402
from fedpipe.metrics import model_metrics, objective_kind  # noqa: E402
from fedpipe.strategies import cyclic, fedavg, histogram, personal  # noqa: E402
from fedpipe.tls import create_federation_tls  # noqa: E402
from fedpipe.usecase import get_usecase  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
HEADLINE = {"classification": ("auc", "log_loss"), "regression": ("rmse", "mae")}
TOLERANCE = 0.005  # histogram within 0.5 % of pooled
VALIDATION = 0.2  # share of each market's training engines (or rows) held back to choose best_federated
FEDERATED = ["bagging", "cyclic", "histogram", "fedavg", "personalised"]
ORDERS = 5  # the pooled reference is trained on this many row orders (the first as loaded) to show its own spread


def validation_split(train: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(fit, validation) from a market's training rows, shaped like its held-out rows.

    Whole engines when the table has ``unit`` (C-MAPSS: held-out rows are other engines), else the last contiguous
    block (a well's rows are sorted by depth and its held-out section is the deepest one).
    """
    if "unit" in train.columns:
        units = np.unique(train["unit"].to_numpy())
        picked = np.random.default_rng(seed).choice(units, size=max(1, round(fraction * len(units))), replace=False)
        held = train["unit"].isin(picked).to_numpy()
    else:
        held = np.arange(len(train)) >= len(train) - max(1, round(fraction * len(train)))
    if held.all() or not held.any():
        raise ValueError(f"validation split of {len(train)} training rows leaves nothing to fit or to validate on")
    return train[~held].reset_index(drop=True), train[held].reset_index(drop=True)


class Market:
    """One market's matrices, built by the market's own loader (the benchmark plays every market).

    ``part="validation"``: train on the fit part of the training rows and score on the validation part instead of
    the held-out rows.
    """

    def __init__(self, config: str, name: str, task: str | None, part: str = "test"):
        federation = load_federation(config)
        options = {**federation.usecase_options, **({"task": task} if task else {})}
        usecase = get_usecase(federation.usecase).for_task(options)
        opts = {**usecase.defaults, **options, "subsample": federation.markets[name].subsample,
                "seed": federation.seed}
        data = usecase.load(name, federation.markets[name].data, opts)
        train, test = data.train, data.test
        if part == "validation":
            train, test = validation_split(data.train, VALIDATION, federation.seed)
        self.name, self.kind, self.objective = name, objective_kind(usecase.objective), usecase.objective
        self.params = {**federation.xgb_params(), "objective": usecase.objective, "nthread": 1}
        x_train, x_test = usecase.features(train, opts), usecase.features(test, opts)
        self.y_train, self.y_test = usecase.target(train, opts), usecase.target(test, opts)
        self.x_train, self.x_test = x_train.to_numpy(), x_test.to_numpy()
        self.dtrain = xgb.DMatrix(x_train, label=self.y_train)
        self.dtest = xgb.DMatrix(x_test, label=self.y_test)


def _hist_worker(config, names, task, rank, port, tls_folder, n_trees, out, part, pooled_cuts):
    market = Market(config, names[rank], task, part)
    dtrain = market.dtrain
    if pooled_cuts:  # the check only: this worker's rows binned with the cut points the pooled model uses
        others = [market if n == market.name else Market(config, n, task, part) for n in names]
        bins = market.params.get("max_bin", 256)
        ref = xgb.QuantileDMatrix(np.vstack([m.x_train for m in others]),
                                  label=np.concatenate([m.y_train for m in others]), max_bin=bins)
        dtrain = xgb.QuantileDMatrix(market.x_train, label=market.y_train, ref=ref, max_bin=bins)
    tls = histogram.FederationTls(Path(tls_folder))
    booster = histogram.train_worker(market.params, dtrain, n_trees,
                                     histogram.communicator_args(f"127.0.0.1:{port}", len(names), rank, tls,
                                                                 market.name))
    Path(out).write_bytes(bytes(booster.save_raw("json")))


def train_histogram(config: str, names: list[str], task: str | None, n_trees: int, part: str = "test",
                    pooled_cuts: bool = False) -> xgb.Booster:
    """Exact federated hist boosting: a server process and one worker process per market, mutual TLS."""
    with tempfile.TemporaryDirectory() as tmp:
        tls = create_federation_tls(Path(tmp) / "tls", names)
        port = histogram.free_port()
        ctx = multiprocessing.get_context("spawn")
        with histogram.federated_server(len(names), port, tls, timeout_s=600):
            workers = [ctx.Process(target=_hist_worker, args=(config, names, task, rank, port, str(tls.folder),
                                                             n_trees, f"{tmp}/{name}.json", part, pooled_cuts))
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


def _pooled_matrix(markets, order=None) -> xgb.DMatrix:
    x, y = np.vstack([m.x_train for m in markets]), np.concatenate([m.y_train for m in markets])
    return xgb.DMatrix(x, label=y) if order is None else xgb.DMatrix(x[order], label=y[order])


def score_methods(config: str, task: str | None, rounds: int, k: int, part: str) -> tuple[pd.DataFrame, dict]:
    """Train every method on each market's training rows (or, for ``part="validation"``, on their fit part) and
    score it on each market's held-out rows (or validation rows): rows (usecase, market, method, metric, value)."""
    federation = load_federation(config)
    names = list(federation.markets)
    markets = [Market(config, name, task, part) for name in names]
    kind, steps = markets[0].kind, rounds * k
    label = federation.usecase + (f":{task}" if task else "")
    held_out = part == "test"
    timings, predictions = {}, {}

    def timed(name, fn):
        started = time.perf_counter()
        result = fn()
        timings[name] = time.perf_counter() - started
        print(f"  {part:<10} {name:<17} {timings[name]:6.1f} s", flush=True)
        return result

    local = timed("local_only", lambda: {m.name: xgb.train(m.params, m.dtrain, steps) for m in markets})
    predictions["local_only"] = {m.name: local[m.name].predict(m.dtest) for m in markets}
    if held_out:  # the references, only on the held-out rows
        pooled = timed("pooled", lambda: xgb.train(markets[0].params, _pooled_matrix(markets), steps))
        predictions["pooled"] = {m.name: pooled.predict(xgb.DMatrix(m.x_test)) for m in markets}
        rows = sum(m.dtrain.num_row() for m in markets)
        for i in range(1, ORDERS):
            order = np.random.default_rng(federation.seed + i).permutation(rows)
            reordered = timed(f"pooled_order_{i}",
                              lambda: xgb.train(markets[0].params, _pooled_matrix(markets, order), steps))
            predictions[f"pooled_order_{i}"] = {m.name: reordered.predict(xgb.DMatrix(m.x_test)) for m in markets}
    for name, fn in (("bagging", lambda: train_bagging(markets, rounds, k)),
                     ("cyclic", lambda: train_bagging(markets, rounds, k, append=True)),
                     ("histogram", lambda: train_histogram(config, names, task, steps, part))):
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
    if held_out:  # same cut points as pooled: any remaining difference would be a federated-training defect
        same_cuts = timed("histogram_pooled_cuts",
                          lambda: train_histogram(config, names, task, steps, part, pooled_cuts=True))
        check = {m.name: float(np.abs(same_cuts.predict(m.dtest) - predictions["pooled"][m.name]).max())
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
    return table, {"timings": timings, "pooled_cuts_max_abs_diff": check}


def _pick(scores: dict[str, float], metric: str) -> str:
    return max(scores, key=scores.get) if metric == "auc" else min(scores, key=scores.get)


def run_usecase(config: str, task: str | None, rounds: int | None, trees: int | None) -> pd.DataFrame:
    """Every method on the held-out rows, plus ``best_federated`` and ``chosen``, picked on validation rows."""
    federation = load_federation(config)
    rounds, k = rounds or federation.rounds, trees or federation.trees_per_round
    label = federation.usecase + (f":{task}" if task else "")
    print(f"\n== {label}: {len(federation.markets)} markets, {rounds} rounds x {k} trees", flush=True)
    table, info = score_methods(config, task, rounds, k, "test")
    validation, val_info = score_methods(config, task, rounds, k, "validation")
    main = "auc" if "auc" in set(table.metric) else "rmse"
    for pick, candidates in (("best_federated", FEDERATED), ("chosen", ["local_only", *FEDERATED])):
        for market in [*federation.markets, "federation"]:
            scores = validation[(validation.market == market) & (validation.metric == main)
                                & validation.method.isin(candidates)]
            best = _pick(dict(zip(scores.method, scores.value)), main)
            picked = table[(table.market == market) & (table.method == best)].assign(method=pick)
            table = pd.concat([table, picked], ignore_index=True)
            table.loc[len(table)] = (label, market, pick, "choice:" + best, np.nan)
    table = pd.concat([table, validation.assign(method="validation:" + validation.method)], ignore_index=True)
    for market, diff in info["pooled_cuts_max_abs_diff"].items():
        table.loc[len(table)] = (label, market, "histogram_pooled_cuts", "max_abs_diff_vs_pooled", diff)
    table.attrs.update(info, timings={**{f"test:{n}": t for n, t in info["timings"].items()},
                                      **{f"validation:{n}": t for n, t in val_info["timings"].items()}})
    return table


def pooled_range(v: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Per market, the lowest and highest headline metric of the pooled reference over its row orders."""
    columns = [c for c in v.columns if c == "pooled" or c.startswith("pooled_order_")]
    return v[columns].min(axis=1), v[columns].max(axis=1)


def _worse(v: pd.DataFrame, method: str, markets: list[str], main: str) -> list[str]:
    """Markets where ``method`` is worse than local-only on the headline metric."""
    lose = (v[method] < v["local_only"]) if main == "auc" else (v[method] > v["local_only"])
    return [m for m in markets if lose[m]]


def targets(table: pd.DataFrame, data_poor: dict[str, str]) -> list[str]:
    """The issue's targets, each stated with the figures measured."""
    lines = []
    for label, part in table.groupby("usecase", sort=False):
        kind = "classification" if "auc" in set(part.metric) else "regression"
        main, _ = HEADLINE[kind]
        v = part[part.metric == main].pivot_table(index="market", columns="method", values="value")
        markets = [m for m in v.index if m != "federation"]
        gap = (v["histogram"] - v["pooled"]).abs() / v["pooled"].abs()
        worst = gap.loc[markets].idxmax()
        ok = bool((gap.loc[markets] <= TOLERANCE).all())
        lines.append(f"- **{label}** histogram within 0.5 % of pooled ({main}) on every market: "
                     f"{'MET' if ok else 'MISSED'} — largest gap {100 * gap[worst]:.2f} % on {worst} "
                     f"(histogram {v.loc[worst, 'histogram']:.4f}, pooled {v.loc[worst, 'pooled']:.4f}).")
        lo, hi = pooled_range(v)
        spread = (hi - lo) / v["pooled"].abs()
        loud = spread.loc[markets].idxmax()
        worst_order = lo if main == "auc" else hi  # better than every pooled order is no defect
        behind = [m for m in markets if (v.loc[m, "histogram"] < lo[m] if main == "auc"
                                         else v.loc[m, "histogram"] > hi[m])]
        detail = ", ".join(f"{m} ({v.loc[m, 'histogram']:.5f} vs {worst_order[m]:.5f})" for m in behind)
        median = v[[c for c in v.columns if c == "pooled" or c.startswith("pooled_order_")]].median(axis=1)
        off = ((v["histogram"] - median).abs() / median.abs()).loc[markets]
        lines.append(f"  pooled itself, the same rows in {ORDERS} orders (quantile-sketch cut points only): spans up "
                     f"to {100 * spread[loud]:.2f} % on {loud} ({lo[loud]:.4f}..{hi[loud]:.4f}); histogram no worse "
                     f"than pooled's worst order on every market: "
                     f"{'yes' if not behind else 'no, behind on ' + detail}; histogram vs pooled's median over the "
                     f"orders: largest gap {100 * off.max():.2f} % on {off.idxmax()}.")
        cuts = part[part.method == "histogram_pooled_cuts"]
        if len(cuts):
            lines.append(f"  histogram given the pooled model's cut points: max |prediction - pooled's| "
                         f"{cuts.value.max():.2g} over every market's held-out rows.")
        worse = _worse(v, "best_federated", markets, main)
        detail = "; ".join(f"{m} {v.loc[m, 'best_federated']:.4f} vs {v.loc[m, 'local_only']:.4f}" for m in worse)
        lines.append(f"  best federated choice (picked on validation rows) at least as good as local-only ({main}) "
                     f"on every market: {'MET' if not worse else 'MISSED on ' + detail}.")
        poor = data_poor.get(label.split(":")[0])
        if poor in v.index:
            # "clearly": the gain is larger than pooled's own order-to-order spread there, so it is not noise
            gain = (v.loc[poor, "best_federated"] - v.loc[poor, "local_only"]) * (1 if main == "auc" else -1)
            noise = hi[poor] - lo[poor]
            lines.append(f"  clearly better on the data-poor market {poor} (gain above pooled's own spread there, "
                         f"{noise:.4f}): {'MET' if gain > noise else 'MISSED'} — best federated "
                         f"{v.loc[poor, 'best_federated']:.4f} vs local-only {v.loc[poor, 'local_only']:.4f} ({main}).")
        worse = _worse(v, "chosen", markets, main)
        detail = "; ".join(f"{m} {v.loc[m, 'chosen']:.4f} vs {v.loc[m, 'local_only']:.4f}" for m in worse)
        lines.append(f"  with local-only among the validation choices (`chosen`), at least as good as local-only: "
                     f"{'on every market' if not worse else 'not on ' + detail}.")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, help="override each federation's rounds")
    parser.add_argument("--trees", type=int, help="override each federation's trees per round")
    parser.add_argument("--only", help="run only this use case")
    args = parser.parse_args(argv)
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
          "`federation` = from summed sufficient statistics; `pooled_lo`..`pooled_hi` = the range of the pooled "
          f"model trained on the same rows in {ORDERS} orders (`pooled` is the first); `best_federated` = the federated method (or personalised) with the best headline metric on a "
          f"validation split of the market's training rows ({VALIDATION:.0%} of its engines, or a well's deepest "
          f"{VALIDATION:.0%}; every method retrained without them), scored on the held-out rows; `chosen` = the "
          "same with local-only among the candidates.", ""]
    for label, part in values.groupby("usecase", sort=False):
        main = "auc" if "auc" in set(part.metric) else "rmse"
        wide = part[part.metric == main].pivot_table(index="market", columns="method", values="value")
        wide["pooled_lo"], wide["pooled_hi"] = pooled_range(wide)
        order = ["local_only", "pooled", "pooled_lo", "pooled_hi", *FEDERATED, "best_federated", "chosen"]
        wide = wide[[c for c in order if c in wide.columns]]
        for pick, column in (("best_federated", "best_is"), ("chosen", "chosen_is")):
            choice = table[(table.usecase == label) & (table.method == pick) & table.metric.str.startswith("choice:")]
            wide[column] = choice.set_index("market").metric.str.removeprefix("choice:")
        wide = wide[[c for c in [*order[:-2], "best_federated", "best_is", "chosen", "chosen_is"] if c in wide.columns]]
        md += [f"## {label} — {main} ({'higher' if main == 'auc' else 'lower'} is better)", "",
               markdown_table(wide.reset_index()), ""]
    md += ["## Targets", "", "Under each histogram line, two checks of where histogram and pooled differ: pooled "
           "retrained on its rows in other orders (XGBoost's quantile sketch, the `max_bin` cut points, depends on "
           "row order; the federation merges the markets' sketches), and histogram retrained with the pooled "
           "model's cut points (0 = the federated training itself adds no difference).", "",
           *targets(values, data_poor), ""]
    (RESULTS / "quality.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
