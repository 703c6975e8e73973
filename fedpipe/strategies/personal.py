"""Personalisation: the global model fine-tuned on one market's rows, and the per-market choice of model.

Runs inside a market. ``personalise`` continues boosting the global model with a few local trees; ``choose``
picks, by a held-out metric, among local-only, global and personalised, and says by how much.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import xgboost as xgb

if TYPE_CHECKING:
    import pandas as pd

# Lower is better for these; higher for the rest (auc, r2, precision, recall).
LOWER_IS_BETTER = {"log_loss", "rmse", "mae"}
CHOICES = ("local_only", "global", "personalised")


def personalise(global_model: xgb.Booster, params: dict, dtrain: xgb.DMatrix, local_trees: int = 5) -> xgb.Booster:
    """The global model plus ``local_trees`` trees boosted on this market's rows (the global model is unchanged)."""
    if local_trees < 1:
        raise ValueError(f"local_trees must be >= 1, got {local_trees}")
    return xgb.train(params, dtrain, num_boost_round=local_trees, xgb_model=global_model.copy())


def choose(scores: dict[str, float], metric: str) -> str:
    """The best of ``scores`` (model name -> held-out metric); ties go to the earlier name in CHOICES."""
    if not scores:
        raise ValueError("no models to choose from")
    order = sorted(scores, key=lambda name: CHOICES.index(name) if name in CHOICES else len(CHOICES))
    sign = 1 if metric in LOWER_IS_BETTER else -1
    return min(order, key=lambda name: sign * scores[name])


PERSONAL_TREES = 5  # local trees on top of the global model when a market personalises it

# metrics.parquet names the global model "federated"; the choice reports it as "global".
_MODEL_NAMES = {"local_only": "local_only", "federated": "global", "personalised": "personalised"}


def choice_table(metrics) -> pd.DataFrame:
    """Per market (last round): the headline metric of local-only, global and personalised, and the best one."""
    import pandas as pd

    from fedpipe.metrics import headline_metrics

    loss, _ = headline_metrics(metrics.columns)
    last = metrics[(metrics["round"] == metrics["round"].max()) & (metrics["market"] != "federation")]
    wide = last.pivot_table(index="market", columns="model", values=loss)
    wide = wide[[m for m in _MODEL_NAMES if m in wide.columns]].rename(columns=_MODEL_NAMES)
    rows = []
    for market, scores in wide.iterrows():
        scores = scores.dropna().to_dict()
        rows.append({"market": market, **{f"{loss} {k}": v for k, v in scores.items()},
                     "best": choose(scores, loss)})
    return pd.DataFrame(rows)
