"""Aggregation strategies: plain functions the round flow's tasks wrap, tested without Prefect.

- ``bagging``   (fedpipe.aggregation): every market adds k trees to the global model; leaves scaled by row share.
- ``cyclic``    (:mod:`.cyclic`): the global model visits the markets in turn; each appends its k trees at weight 1.
- ``fedavg``    (:mod:`.fedavg`): a linear model on federated standardised features, weights averaged by rows.
- ``histogram`` (:mod:`.histogram`): exact federated XGBoost over XGBoost's own gRPC collective, mutual TLS.
- personalisation (:mod:`.personal`): the global model plus a few local trees; per market the best of
  local-only, global and personalised.
"""

from fedpipe.config import STRATEGIES, check_base_score
from fedpipe.errors import StrategyError

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


def check_strategy(strategy: str, federation=None) -> str:
    """The strategy, if the round flow can run it here with ``federation``; a StrategyError (or, for a missing
    base_score, ConfigError) otherwise. Plain and Prefect-free: ``fedpipe run`` calls it before Prefect starts."""
    if strategy not in STRATEGIES:
        raise StrategyError(f"strategy '{strategy}' is not one the round flow runs "
                            f"(choose from {', '.join(STRATEGIES)})")
    if strategy == "cyclic" and federation is not None and federation.screening.holdout_check:
        # each visit builds on the last, so one update cannot be judged (or dropped) apart from the ones after it
        raise StrategyError("strategy 'cyclic' cannot be combined with [screening] holdout_check = true "
                            "(each market's trees are fitted on top of the previous market's)")
    if strategy == "fedavg" and federation is not None and federation.screening.holdout_check:
        raise StrategyError("strategy 'fedavg' cannot be combined with [screening] holdout_check = true "
                            "(hold-out screening scores tree updates)")
    if federation is not None:  # a --strategy override may need the base_score the file's strategy did not
        check_base_score(federation, strategy)
    if strategy == "histogram":
        from fedpipe.strategies.histogram import require_federated_plugin

        require_federated_plugin()
    return strategy


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
