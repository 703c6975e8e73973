"""The end of a run, as the data council sees it: register the final model and gate it against the champion."""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.dispatch import market_runner
from flows.market import market_gate
from tasks.council import decide_promotion, publish_champion, register_candidate, reopen_run


@flow(name="register-model", flow_run_name="register round {round_} model")
def register_model(config: str, run_root: str, exchange: str, round_: int, dispatch: str = "local") -> dict:
    """Register the run's final model; it becomes champion only if no market's held-out metric is worse than
    under the current champion by more than the council's tolerance (scored in each market); else challenger."""
    logger = get_run_logger()
    run = reopen_run(config, run_root, exchange)
    version, champion = register_candidate(run, round_)
    champion_sha = None
    if champion is not None:
        champion_sha = publish_champion(run, champion)
        record = next((r for r in run.rounds if r["round"] == round_), None)
        markets = sorted(record["contributors"]) if record else list(run.federation.markets)
        run_market_flows = market_runner(dispatch, run.federation.name)
        run_market_flows(market_gate, markets, run.federation.market_timeout_s, config=config, exchange=exchange)
    decision = decide_promotion(run, version, round_, champion_sha)
    logger.info("registry v%d is %s: %s", version, decision["alias"], decision["summary"])
    return decision
