"""Screening of market updates at the centre: hard limits on every update, and an optional hold-out check.

Limits (always on): the sealed envelope is at most ``[screening] max_update_mb`` (checked before it is opened);
an update holds exactly ``trees_per_round`` boosting iterations; every tree is well formed (arrays of one
length, children inside the tree), splits only on features the model has (``split_indices < num_feature``) and
has finite leaves (fedpipe.aggregation.check_compatible).

Hold-out check (``[screening] holdout_check = true``): the centre posts, per update, a signed *candidate* model
(the current global model plus that market's new trees at full weight) and a *baseline* (the current global
model). Every contributing market scores the baseline and every other market's candidate on its own held-out
rows and seals back only the loss per candidate. An update is rejected when the median, over the other markets,
of the relative loss increase ``(loss(candidate) - loss(baseline)) / loss(baseline)`` exceeds
``max_loss_increase``. Cost: one more market flow per market per round (load + M predictions on held-out rows),
i.e. M x M predictions per round; it is off by default.
"""

from __future__ import annotations

import copy
import math
import statistics
from typing import Any

from fedpipe.aggregation import TreeUpdate, _model, aggregate_bagging, base_score, iteration_count, load_model_doc
from fedpipe.config import FederationConfig

BASELINE = "_baseline"  # not a valid market name, so it never collides with one


def check_update(federation: FederationConfig, reference: dict | None, update: TreeUpdate) -> None:
    """Raise ValueError naming the market if its trees break a limit or could not belong to the model."""
    doc = update.model
    iterations = iteration_count(doc)
    if iterations != federation.trees_per_round:
        raise ValueError(f"market '{update.market}': update holds {iterations} boosting iterations, "
                         f"the federation asks for {federation.trees_per_round} per round")
    agreed = federation.model.get("base_score")
    if agreed is not None and not all(math.isclose(v, float(agreed), rel_tol=1e-6) for v in base_score(doc)):
        # checked against the config, not only the global model, so round 1's first market cannot set it
        raise ValueError(f"market '{update.market}': update has base_score {base_score(doc)}, the federation "
                         f"agreed {float(agreed):g} ([model] base_score)")
    num_feature = int((reference or doc)["learner"]["learner_model_param"]["num_feature"])
    for i, tree in enumerate(_model(doc)["trees"]):
        n = len(tree["left_children"])
        arrays = ("right_children", "split_indices", "split_conditions", "base_weights", "default_left")
        if n == 0 or any(len(tree[key]) != n for key in arrays):
            raise ValueError(f"market '{update.market}': tree {i} is malformed (node arrays of different lengths)")
        for node, (left, right, feature) in enumerate(zip(tree["left_children"], tree["right_children"],
                                                          tree["split_indices"])):
            if left == -1 and right == -1:
                continue  # a leaf
            if not (0 < left < n and 0 < right < n):
                raise ValueError(f"market '{update.market}': tree {i} node {node} points outside the tree")
            if not 0 <= feature < num_feature:
                raise ValueError(f"market '{update.market}': tree {i} node {node} splits on feature {feature}, "
                                 f"the model has {num_feature} features")


def candidate_models(global_doc: dict | None, payloads: dict[str, dict]) -> dict[str, dict]:
    """The baseline (current global model) and, per market, the global model plus that market's trees."""
    candidates = {market: aggregate_bagging(global_doc, [TreeUpdate(market, p["model"], int(p["n_rows"]))])
                  for market, p in sorted(payloads.items())}
    if global_doc is None:  # first round: the model with no trees, i.e. the agreed base score
        baseline = copy.deepcopy(next(iter(candidates.values())))
        model = _model(baseline)
        model["trees"], model["tree_info"], model["iteration_indptr"] = [], [], [0]
        model["gbtree_model_param"]["num_trees"] = "0"
    else:
        baseline = global_doc
    return {BASELINE: baseline, **candidates}


def judge(losses: dict[str, dict[str, float]], payloads: dict[str, dict],
          bound: float) -> tuple[dict[str, dict], dict[str, str]]:
    """Split updates into kept and rejected, from each reporting market's losses ({candidate: loss})."""
    kept, rejected = {}, {}
    for market, payload in sorted(payloads.items()):
        changes = [(report[market] - report[BASELINE]) / max(report[BASELINE], 1e-12)
                   for reporter, report in sorted(losses.items())
                   if reporter != market and market in report and BASELINE in report]
        if changes and statistics.median(changes) > bound:
            rejected[market] = (f"rejected update: on {len(changes)} other market(s)' held-out data it raises the "
                                f"loss by a median {statistics.median(changes):+.1%} (bound {bound:+.1%})")
        else:
            kept[market] = payload
    return kept, rejected


def score_candidates(predict_loss, candidates: dict[str, bytes], own: str) -> dict[str, Any]:
    """Inside a market: loss of the baseline and of every other market's candidate; its own is skipped."""
    return {name: float(predict_loss(load_model_doc(raw))) for name, raw in sorted(candidates.items()) if name != own}


# --- where candidates and hold-out reports live in the exchange ------------------------------------------------

def candidate_path(exchange, round_: int, name: str) -> str:
    return exchange._path(f"round-{round_:03d}", "candidates", f"{name}.json")


def report_path(exchange, round_: int, market: str) -> str:
    return exchange._path(f"round-{round_:03d}", "screening", f"{market}.sealed")


# --- centre ------------------------------------------------------------------------------------------------------

def post_candidates(run, round_: int, global_doc: dict | None, payloads: dict[str, dict]) -> list[str]:
    """Sign and post the baseline and one candidate per update; return the candidates' names."""
    from fedpipe import keys, sealing
    from fedpipe.aggregation import dump_model_doc

    aggregator = keys.load_identity(run.federation.keys_dir, "aggregator")
    for name, doc in candidate_models(global_doc, payloads).items():
        raw = dump_model_doc(doc)
        path = candidate_path(run.exchange, round_, name)
        run.exchange.put(path, raw)
        run.exchange.put(path + ".sig", sealing.sign_model(raw, federation=run.federation.name, round=round_,
                                                           signer=aggregator))
    return sorted(payloads)


def open_reports(run, round_: int, parent: str) -> dict[str, dict[str, float]]:
    """Open the markets' sealed hold-out reports; a market that sent none (or a bad one) just does not vote."""
    from fedpipe import central

    opened, _ = central.open_sealed(run, round_, parent, "metrics",
                                    slot=lambda r, market: report_path(run.exchange, r, market))
    return {market: {k: float(v) for k, v in report["losses"].items()} for market, report in opened.items()}


# --- market ------------------------------------------------------------------------------------------------------

def holdout_losses(site, data, round_: int) -> dict[str, float]:
    """Inside a market: verify each posted candidate's signature, score it on the held-out rows, keep the loss."""
    from fedpipe import market as m
    from fedpipe import sealing, trust
    from fedpipe.aggregation import to_booster
    from fedpipe.metrics import classification_metrics, regression_metrics

    dtest = m._matrix(site, data.test)
    y = dtest.get_label()
    regression = site.usecase.objective.startswith("reg:")
    signer = trust.aggregator_keys(site.federation, keys_dir=site.keys_dir)
    folder = candidate_path(site.exchange, round_, BASELINE).rsplit("/", 1)[0]
    candidates = {}
    for path in site.exchange.fs.find(folder):
        if path.endswith(".json"):
            raw = site.exchange.get(path)
            sealing.verify_model(raw, site.exchange.get(path + ".sig"), federation=site.federation.name,
                                 round=round_, signer=signer)
            candidates[path.rsplit("/", 1)[1][:-5]] = raw

    def loss(doc: dict) -> float:
        predicted = to_booster(doc).predict(dtest)
        return regression_metrics(y, predicted)["mae"] if regression else classification_metrics(y, predicted)["log_loss"]

    return score_candidates(loss, candidates, own=site.market)


def check_limits(federation: FederationConfig, global_doc: dict | None,
                 payloads: dict[str, dict]) -> tuple[dict[str, dict], dict[str, str]]:
    """Keep the updates that meet every limit (check_update); the others are rejected with the reason."""
    kept, rejected = {}, {}
    for market, payload in sorted(payloads.items()):
        try:
            check_update(federation, global_doc, TreeUpdate(market, payload["model"], int(payload["n_rows"])))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            rejected[market] = f"rejected update: {exc}"
            continue
        kept[market] = payload
    return kept, rejected
