"""Aggregation strategies: plain functions the round flow's tasks wrap, tested without Prefect.

- ``bagging``   (fedpipe.aggregation): every market adds k trees to the global model; leaves scaled by row share.
- ``cyclic``    (:mod:`.cyclic`): the global model visits the markets in turn; each appends its k trees at weight 1.
- ``fedavg``    (:mod:`.fedavg`): a linear model on federated standardised features, weights averaged by rows.
- ``histogram`` (:mod:`.histogram`): exact federated XGBoost over XGBoost's own gRPC collective, mutual TLS.
- personalisation (:mod:`.personal`): the global model plus a few local trees; per market the best of
  local-only, global and personalised.
"""

from fedpipe.config import STRATEGIES

TREE_STRATEGIES = ("bagging", "cyclic", "histogram")

__all__ = ["STRATEGIES", "TREE_STRATEGIES"]


def round_step(strategy: str, trees_per_round: int) -> str:
    """What each market adds to the model in a round, in words (for summaries and lineage)."""
    if strategy == "fedavg":
        from fedpipe.fedavg_round import EPOCHS

        return f"{EPOCHS} SGD epochs of a linear model per market per round"
    if strategy == "histogram":
        return f"{trees_per_round} trees per round grown by all markets together"
    return f"{trees_per_round} new trees per market per round"


def aggregate(strategy: str, global_doc: dict | None, updates: list) -> dict:
    """The next global model from a round's tree updates, as ``strategy`` combines them."""
    from fedpipe.aggregation import aggregate_bagging

    if strategy == "bagging":
        return aggregate_bagging(global_doc, updates)
    if strategy == "cyclic":
        from fedpipe.strategies.cyclic import append_round

        return append_round(global_doc, updates)
    if strategy == "histogram":
        from fedpipe.strategies.histogram import aggregate_histogram

        return aggregate_histogram(global_doc, updates)
    raise ValueError(f"strategy '{strategy}' has no tree aggregation in the round flow (known: {STRATEGIES})")
