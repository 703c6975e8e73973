"""Quality benchmark: every aggregation strategy against local-only and pooled references, on every use case.

For each federation file in federations/ (one per use case; predictive maintenance runs both its tasks, the
failure-within-H classifier and capped-RUL regression), it trains with the federation's own rounds, trees per round
and XGBoost parameters:

- ``local_only``: each market alone, rounds x trees boosting steps (reference, computed only here);
- ``pooled``: one model on every market's rows together, same steps (reference, computed only here);
- ``bagging``, ``cyclic``: the strategies' aggregation functions, round by round, as the round flow applies them;
- ``histogram``: XGBoost's federated collective, one worker process per market, mutual TLS on loopback;
- ``fedavg``: the linear model, federated standardisation, weights averaged by rows;
- ``personalised``: the histogram model plus 5 local trees per market;
- ``best_federated``: per market the best of the federated models above (chosen on the held-out metric).

Each market is scored on its own held-out rows; ``federation`` rows come from summed sufficient statistics.
Writes benchmarks/results/quality.csv (usecase, market, method, metric, value) and quality.md; prints the table.

    python benchmarks/quality.py [--rounds N] [--trees K] [--only predictive_maintenance]
"""

from __future__ import annotations

import argparse
import multiprocessing
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
from fedpipe.federation_metrics import federation_metrics, sufficient_stats  # noqa: E402
from fedpipe.metrics import model_metrics, objective_kind  # noqa: E402
from fedpipe.strategies import cyclic, fedavg, histogram, personal  # noqa: E402
from fedpipe.tls import create_federation_tls  # noqa: E402
from fedpipe.usecase import get_usecase  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
HEADLINE = {"classification": ("auc", "log_loss"), "regression": ("rmse", "mae")}
TOLERANCE = 0.005  # histogram within 0.5 % of pooled


class Market:
    """One market's matrices, built by the market's own loader (the benchmark plays every market)."""

    def __init__(self, config: str, name: str, task: str | None):
        federation = load_federation(config)
        options = {**federation.usecase_options, **({"task": task} if task else {})}
        usecase = get_usecase(federation.usecase).for_task(options)
        opts = {**usecase.defaults, **options, "subsample": federation.markets[name].subsample,
                "seed": federation.seed}
        data = usecase.load(name, federation.markets[name].data, opts)
        self.name, self.kind, self.objective = name, objective_kind(usecase.objective), usecase.objective
        self.params = {**federation.xgb_params(), "objective": usecase.objective, "nthread": 1}
        x_train, x_test = usecase.features(data.train, opts), usecase.features(data.test, opts)
        self.y_train, self.y_test = usecase.target(data.train, opts), usecase.target(data.test, opts)
        self.x_train, self.x_test = x_train.to_numpy(), x_test.to_numpy()
        self.dtrain = xgb.DMatrix(x_train, label=self.y_train)
        self.dtest = xgb.DMatrix(x_test, label=self.y_test)


def _hist_worker(config, name, task, rank, world, port, tls_folder, n_trees, out):
    market = Market(config, name, task)
    tls = histogram.FederationTls(Path(tls_folder))
    booster = histogram.train_worker(market.params, market.dtrain, n_trees,
                                     histogram.communicator_args(f"127.0.0.1:{port}", world, rank, tls, name))
    Path(out).write_bytes(bytes(booster.save_raw("json")))


def train_histogram(config: str, names: list[str], task: str | None, n_trees: int) -> xgb.Booster:
    """Exact federated hist boosting: a server process and one worker process per market, mutual TLS."""
    with tempfile.TemporaryDirectory() as tmp:
        tls = create_federation_tls(Path(tmp) / "tls", names)
        port = histogram.free_port()
        ctx = multiprocessing.get_context("spawn")
        with histogram.federated_server(len(names), port, tls, timeout_s=600):
            workers = [ctx.Process(target=_hist_worker, args=(config, name, task, rank, len(names), port,
                                                             str(tls.folder), n_trees, f"{tmp}/{name}.json"))
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


def train_fedavg(markets, rounds, epochs=3, seed=0):
    kind = markets[0].kind
    stats = [fedavg.feature_stats(m.x_train, m.y_train if kind == "regression" else None) for m in markets]
    model = fedavg.initial_model(fedavg.pooled_scaler(stats), kind)
    for r in range(rounds):
        updates = [fedavg.local_update(model, m.x_train, m.y_train, epochs=epochs, seed=seed + r) for m in markets]
        model = fedavg.average_weights(model, updates)
    return model


def run_usecase(config: str, task: str | None, rounds: int | None, trees: int | None) -> pd.DataFrame:
    federation = load_federation(config)
    rounds, k = rounds or federation.rounds, trees or federation.trees_per_round
    names = list(federation.markets)
    markets = [Market(config, name, task) for name in names]
    kind, steps = markets[0].kind, rounds * k
    label = federation.usecase + (f":{task}" if task else "")
    print(f"\n== {label}: {len(names)} markets, {rounds} rounds x {k} trees ({kind})", flush=True)
    timings, predictions = {}, {}

    def timed(name, fn):
        started = time.perf_counter()
        result = fn()
        timings[name] = time.perf_counter() - started
        print(f"  {name:<13} {timings[name]:6.1f} s", flush=True)
        return result

    local = timed("local_only", lambda: {m.name: xgb.train(m.params, m.dtrain, steps) for m in markets})
    predictions["local_only"] = {m.name: local[m.name].predict(m.dtest) for m in markets}
    pooled = timed("pooled", lambda: xgb.train(markets[0].params, xgb.DMatrix(
        np.vstack([m.x_train for m in markets]), label=np.concatenate([m.y_train for m in markets])), steps))
    predictions["pooled"] = {m.name: pooled.predict(xgb.DMatrix(m.x_test)) for m in markets}
    for name, fn in (("bagging", lambda: train_bagging(markets, rounds, k)),
                     ("cyclic", lambda: train_bagging(markets, rounds, k, append=True)),
                     ("histogram", lambda: train_histogram(config, names, task, steps))):
        model = timed(name, fn)
        predictions[name] = {m.name: model.predict(m.dtest) for m in markets}
        if name == "histogram":
            hist_model = model
    linear = timed("fedavg", lambda: train_fedavg(markets, rounds))
    predictions["fedavg"] = {m.name: fedavg.predict(linear, m.x_test) for m in markets}
    own = timed("personalised", lambda: {m.name: personal.personalise(hist_model, m.params, m.dtrain, 5)
                                         for m in markets})
    predictions["personalised"] = {m.name: own[m.name].predict(m.dtest) for m in markets}

    main, _ = HEADLINE[kind]
    rows = []
    for method, by_market in predictions.items():
        for m in markets:
            for metric, value in model_metrics(m.objective, m.y_test, by_market[m.name]).items():
                if metric != "rows":
                    rows.append((label, m.name, method, metric, value))
        fed = federation_metrics([sufficient_stats(kind, m.y_test, by_market[m.name]) for m in markets])
        rows += [(label, "federation", method, metric, v) for metric, v in fed.items() if metric != "rows"]
    table = pd.DataFrame(rows, columns=["usecase", "market", "method", "metric", "value"])
    federated = ["bagging", "cyclic", "histogram", "fedavg", "personalised"]
    for market in [*names, "federation"]:
        scores = table[(table.market == market) & (table.metric == main) & table.method.isin(federated)]
        scores = dict(zip(scores.method, scores.value))
        best = max(scores, key=scores.get) if main == "auc" else min(scores, key=scores.get)
        picked = table[(table.market == market) & (table.method == best)].assign(method="best_federated")
        table = pd.concat([table, picked.assign(metric=picked.metric)], ignore_index=True)
        table.loc[len(table)] = (label, market, "best_federated", "choice:" + best, np.nan)
    table.attrs["timings"] = timings
    return table


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
        better = (v["best_federated"] >= v["local_only"]) if main == "auc" else (v["best_federated"] <= v["local_only"])
        ok = bool(better.loc[markets].all())
        worse = [m for m in markets if not better[m]]
        lines.append(f"  best federated choice at least as good as local-only ({main}) on every market: "
                     f"{'MET' if ok else 'MISSED on ' + ', '.join(worse)}.")
        poor = data_poor.get(label.split(":")[0])
        if poor in v.index:
            lines.append(f"  data-poor market {poor}: best federated {v.loc[poor, 'best_federated']:.4f} vs "
                         f"local-only {v.loc[poor, 'local_only']:.4f} ({main}).")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, help="override each federation's rounds")
    parser.add_argument("--trees", type=int, help="override each federation's trees per round")
    parser.add_argument("--only", help="run only this use case")
    args = parser.parse_args(argv)
    histogram.require_federated_plugin()
    runs, data_poor = [], {}
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
    RESULTS.mkdir(parents=True, exist_ok=True)
    values = table.dropna(subset=["value"])
    values.to_csv(RESULTS / "quality.csv", index=False)
    md = ["# Quality benchmark", "", f"`python benchmarks/quality.py` (xgboost {xgb.__version__}); each market "
          "scored on its own held-out rows; `federation` = from summed sufficient statistics; `best_federated` = "
          "best of the federated methods per market on the headline metric (chosen on the held-out rows).", ""]
    for label, part in values.groupby("usecase", sort=False):
        main = "auc" if "auc" in set(part.metric) else "rmse"
        wide = part[part.metric == main].pivot_table(index="market", columns="method", values="value")
        order = ["local_only", "pooled", "bagging", "cyclic", "histogram", "fedavg", "personalised",
                 "best_federated"]
        wide = wide[[c for c in order if c in wide.columns]]
        choice = table[(table.usecase == label) & table.metric.str.startswith("choice:")]
        wide["best_is"] = choice.set_index("market").metric.str.removeprefix("choice:")
        md += [f"## {label} — {main} ({'higher' if main == 'auc' else 'lower'} is better)", "",
               markdown_table(wide.reset_index()), ""]
    md += ["## Targets", "", *targets(values, data_poor), ""]
    (RESULTS / "quality.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
