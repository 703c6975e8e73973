"""The council's "no market worse off" gate, and the model card.

A new global model becomes champion only if, on every market's own held-out data, it is not worse than the
current champion by more than ``[registry] tolerance`` on ``[registry] metric``. The scoring happens in the
markets (:func:`score_champion`, called from the ``market-gate`` flow); only metrics come back, sealed. The
candidate's metrics are the ones its markets already sealed in the run's last round (``metrics.parquet``).

Public API: :func:`gate`, :func:`vouching_markets`, :func:`score_champion`, :func:`publish_champion`,
:func:`open_gate_metrics`, :func:`candidate_metrics`, :func:`model_card`.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})
GATE_ROUND = 0  # gate envelopes and the champion's signature use round 0: no training round has that number
# ...but fedavg's starting model is round 0's global model: the champion's own signature kind keeps them apart.
CHAMPION_KIND = "gate-champion"


def vouching_markets(federation) -> list[str]:
    """Every market that must vouch for a new champion: all of the federation's, bar revoked ones. A market left
    out of the run (bad data, timed out) has no metrics for the candidate, so it blocks: the council cannot tell it
    is not worse off, and can still promote by hand (``fedpipe models promote``)."""
    from fedpipe.trust import revoked_markets

    revoked = revoked_markets(federation)
    return sorted(m for m in federation.markets if m not in revoked)


def gate(candidate: dict[str, dict], champion: dict[str, dict] | None, *, metric: str, tolerance: float,
         markets: list[str] | None = None, reasons: dict[str, str] | None = None) -> dict[str, Any]:
    """Decide whether ``candidate`` may replace ``champion``.

    Args:
        candidate: per market, the candidate's metrics on that market's held-out data.
        champion: the same for the current champion, or None when there is no champion yet.
        metric: the metric compared (lower is better for log_loss, mae, rmse; higher for the others).
        tolerance: how much worse a market may get before it blocks the candidate.
        markets: the markets that must vouch for the candidate (default: those in ``candidate``). One that sent
            no metrics for either model blocks: the council cannot tell it is not worse off.
        reasons: why a market sent no metrics (left out of the round, gate metrics rejected), said in its row.

    Returns:
        ``{"passed", "metric", "tolerance", "markets": {m: {candidate, champion, worse_by, blocks}},
        "blocked_by", "summary"}``.
    """
    head = {"metric": metric, "tolerance": tolerance}
    if champion is None:
        return {**head, "passed": True, "markets": {m: {"candidate": v.get(metric)} for m, v in candidate.items()},
                "blocked_by": [], "summary": "no champion yet: the first registered model becomes champion"}
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    rows, blocked = {}, []
    for market in sorted(markets if markets is not None else candidate):
        new, old = (candidate.get(market) or {}).get(metric), (champion.get(market) or {}).get(metric)
        if new is None or old is None or math.isnan(new) or math.isnan(old):
            missing = "candidate" if new is None or math.isnan(new) else "champion"
            rows[market] = {"candidate": new, "champion": old, "worse_by": None, "blocks": True,
                            "why": f"no {metric} for the {missing} on {market}'s held-out data"
                                   + (f" ({reasons[market]})" if reasons and market in reasons else "")}
            blocked.append(market)
            continue
        worse_by = sign * (new - old)
        blocks = worse_by > tolerance + 1e-12
        rows[market] = {"candidate": new, "champion": old, "worse_by": worse_by, "blocks": blocks}
        if blocks:
            rows[market]["why"] = (f"{metric} {new:.4f} vs champion {old:.4f}: worse by {worse_by:.4f}, "
                                   f"more than the tolerance {tolerance:g}")
            blocked.append(market)
    if blocked:
        summary = "blocked by " + "; ".join(f"{m} ({rows[m]['why']})" for m in blocked)
    else:
        worst = max(rows, key=lambda m: rows[m]["worse_by"]) if rows else None
        summary = (f"no market worse off by more than {tolerance:g} {metric}"
                   + (f" (largest change: {worst} {rows[worst]['worse_by']:+.4f})" if worst else ""))
    return {**head, "passed": not blocked, "markets": rows, "blocked_by": blocked, "summary": summary}


# --- in the market -------------------------------------------------------------------------------

def score_champion(site, data, champion_doc: dict) -> dict[str, Any]:
    """Score the champion on the market's held-out rows (runs in the market); only metrics leave."""
    from fedpipe.metrics import model_metrics
    from fedpipe.models import predict

    features = site.usecase.features(data.test, site.options())
    scores = predict(champion_doc, features)  # trees or a fedavg linear model
    y = data.test[site.usecase.label].to_numpy()
    return {"market": site.market,
            "metrics": model_metrics(site.usecase.objective, y, scores, site.federation.roi.threshold)}


def fetch_champion(site) -> tuple[dict, str]:
    """The champion the centre posted for the gate, checked against the aggregator's signature."""
    from fedpipe import sealing
    from fedpipe.aggregation import load_model_doc
    from fedpipe.market import fetch_signed

    raw = fetch_signed(site, gate_path(site.exchange, "champion.json"), round_=GATE_ROUND, kind=CHAMPION_KIND)
    return load_model_doc(raw), sealing.sha256_hex(raw)


# --- at the centre -------------------------------------------------------------------------------

def gate_path(exchange, *parts: str) -> str:
    return "/".join([exchange.root.rstrip("/"), "gate", *parts])


def publish_champion(run, model: bytes) -> str:
    """Sign the current champion for the gate and post it to the exchange; returns its sha256."""
    from fedpipe import keys, sealing

    aggregator = keys.load_identity(run.federation.keys_dir, "aggregator")
    path = gate_path(run.exchange, "champion.json")
    run.exchange.put(path, model)
    run.exchange.put(path + ".sig", sealing.sign_model(model, federation=run.federation.name, round=GATE_ROUND,
                                                       signer=aggregator, kind=CHAMPION_KIND))
    return sealing.sha256_hex(model)


def open_gate_metrics(run, champion_sha: str) -> tuple[dict[str, dict], dict[str, str]]:
    """Open each market's sealed champion metrics: (metrics by market, reasons for those missing)."""
    from fedpipe import keys, sealing
    from fedpipe.central import _known_senders
    from fedpipe.errors import SealError

    senders = _known_senders(run.federation)
    aggregator = keys.load_identity(run.federation.keys_dir, "aggregator")
    opened, missing = {}, {}
    for market in run.federation.markets:
        path = gate_path(run.exchange, f"{market}.sealed")
        try:
            if not run.exchange.exists(path):
                missing[market] = "sent no gate metrics"
                continue
            header, payload = sealing.open_update(
                run.exchange.get(path), federation=run.federation.name, round=GATE_ROUND, parent=champion_sha,
                senders=senders, recipient=aggregator, kind="metrics")
            if header["market"] != market:
                raise SealError(f"envelope in {market}'s slot was sealed by market '{header['market']}'")
            opened[market] = json.loads(payload)["metrics"]
        except (SealError, ValueError, OSError, KeyError) as exc:
            missing[market] = f"rejected gate metrics: {exc}"
    return opened, missing


def candidate_metrics(run_root, round_: int) -> dict[str, dict]:
    """The candidate's per-market metrics, as its markets sealed them in the run's last round."""
    metrics = pd.read_parquet(run_root / "metrics.parquet")
    # Markets only: the "federation" row is a total, not a market the gate could ask about its held-out data.
    rows = metrics[(metrics["round"] == round_) & (metrics["model"] == "federated") & (metrics["market"] != "federation")]
    return {r["market"]: {k: v for k, v in r.items() if k not in ("round", "market", "model")}
            for r in rows.to_dict(orient="records")}


def model_card(version: int, lineage: dict, gate_result: dict, alias: str, roi: pd.DataFrame | None,
               usecase_doc: str = "") -> str:
    """A Markdown model card: intended use, data, per-market metrics, ROI, the gate, limitations."""
    from fedpipe.lineage import lineage_markdown

    metric = gate_result["metric"]
    lines = [
        f"# Model card: {lineage['federation']} v{version} ({alias})", "",
        "## Intended use", "",
        (usecase_doc.strip() or f"Use case `{lineage['usecase']}`.")
        + f" Trained federated across {len(lineage['markets'])} markets with strategy `{lineage['strategy']}`; "
          "for the markets that contributed, on data that passes the contract below. Decision support, not an "
          "automatic control: the maintenance threshold and costs are the council's (`[roi]`).", "",
        "## Data", "",
        f"Contract `{lineage['contract'].get('suite')}` version {lineage['contract'].get('contract_version')}. "
        "No row left any market; the fingerprints are content hashes computed in each market.", "",
        lineage_markdown(lineage), "",
        "## Per-market metrics (held-out data of each market)", "",
        f"| market | {metric} (this model) | {metric} (champion before) | worse by | blocks |", "|---|---|---|---|---|",
    ]
    fmt = lambda x: "" if x is None else f"{x:.4f}"  # noqa: E731
    for market, row in gate_result["markets"].items():
        lines.append(f"| {market} | {fmt(row.get('candidate'))} | {fmt(row.get('champion'))} | "
                     f"{fmt(row.get('worse_by'))} | {row.get('blocks', False)} |")
    lines += ["", f"**Gate** (tolerance {gate_result['tolerance']:g} {metric}): "
              f"{'passed' if gate_result['passed'] else 'not passed'}: {gate_result['summary']}.", ""]
    if roi is not None and len(roi):
        from fedpipe.central import markdown_table

        cols = [c for c in ("market", "savings", "programme_cost", "roi", "savings_vs_local_only") if c in roi.columns]
        lines += ["## ROI (last round of the run that built it)", "", markdown_table(roi[cols]), ""]
    left_out = lineage.get("left_out") or {}
    lines += [
        "## Limitations", "",
        "- Evaluated only on each market's own held-out data; a market that did not contribute is not covered.",
        "- One global model for all markets: a market may do better with its local-only model (see the run's "
        "summary); the gate only guarantees no market is worse off than under the previous champion.",
        "- Metrics are from one held-out split per market; no confidence intervals.",
    ]
    if left_out:
        lines.append("- Markets left out of the last round: " + "; ".join(f"{m}: {w}" for m, w in left_out.items()))
    return "\n".join(lines) + "\n"
