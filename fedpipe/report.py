"""The report the council reads: one self-contained HTML page per run, plus a PNG of its headline plot.

Built only from what the run folder holds (``metrics.parquet``, ``roi.parquet``, ``rounds.json``, the models and,
when present, their ``models/round-NNN.lineage.json``): numbers the markets reported, never rows. Plots are
matplotlib (Agg) PNGs embedded as base64, styles are inline: the page opens offline, attached to an e-mail.

Public API: :func:`write_report`, :func:`round_summary`, :func:`round_markdown`.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from fedpipe.central import markdown_table
from fedpipe.errors import FedpipeError
from fedpipe.metrics import headline_metrics
from fedpipe.storage import atomic_write_bytes

LABELS = {"log_loss": "log loss (lower is better)", "auc": "AUC", "mae": "MAE (lower is better)", "r2": "R²"}
COLOURS = {"federated": "#1f6fb4", "local_only": "#d9822b"}

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0} img{max-width:100%;height:auto;border:1px solid #eee}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-size:.9rem} th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right}
th{background:#f4f6f8} td:first-child,th:first-child{text-align:left} .bad{color:#b42318} .good{color:#067647}
code{font-size:.85rem;background:#f4f6f8;padding:0 .2rem}
"""


class ReportError(FedpipeError):
    """The run folder lacks what a report needs."""


def round_summary(metrics: pd.DataFrame, roi: pd.DataFrame) -> pd.DataFrame:
    """One round, one row per market plus the federation: headline metric and ROI, federated vs local-only."""
    loss, other = headline_metrics(metrics.columns)
    m = metrics.pivot(index="market", columns="model", values=[loss, other])
    table = pd.DataFrame({
        f"{loss} federated": m[(loss, "federated")], f"{loss} local-only": m[(loss, "local_only")],
        f"{other} federated": m[(other, "federated")],
    })
    r = roi.set_index("market")
    table["ROI federated"] = r["roi"]
    table["ROI local-only"] = r["roi_local_only"]
    table["savings vs local-only"] = r["savings_vs_local_only"]
    table["federated better"] = table[f"{loss} federated"] < table[f"{loss} local-only"]
    if "federation" in r.index:
        table.loc["federation", ["ROI federated", "ROI local-only", "savings vs local-only"]] = (
            r.loc["federation", ["roi", "roi_local_only", "savings_vs_local_only"]].to_numpy())
    return table.reset_index()


def round_markdown(federation: str, round_: int, summary: pd.DataFrame, dropped: dict[str, str]) -> str:
    """A short Markdown story of one round for the Prefect UI."""
    markets = summary[summary["market"] != "federation"]
    better = markets[markets["federated better"] == True]["market"].tolist()  # noqa: E712
    total = summary[summary["market"] == "federation"]
    lines = [f"## {federation}: round {round_}", "",
             f"- {len(markets)} market(s) evaluated; federated model better than local-only in "
             f"{len(better)}: {', '.join(better) or 'none'}"]
    if len(total):
        t = total.iloc[0]
        lines.append(f"- federation ROI {t['ROI federated']:.3g} (local-only {t['ROI local-only']:.3g}); "
                     f"savings vs local-only {t['savings vs local-only']:,.0f}")
    lines.append("- left out: " + ("; ".join(f"**{m}**: {why}" for m, why in dropped.items()) or "none"))
    return "\n".join(lines + ["", markdown_table(summary)])


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _figures(metrics: pd.DataFrame, roi: pd.DataFrame) -> tuple[bytes, bytes]:
    """(headline: metric per market over rounds, ROI: savings per market and federation over rounds) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    loss, _ = headline_metrics(metrics.columns)
    markets = sorted(metrics["market"].unique())
    figs = []
    for frame, value, ylabel, panels in (
        (metrics, loss, LABELS.get(loss, loss), markets),
        (roi.assign(local_only=roi["savings_local_only"]), "savings", "savings", [*markets, "federation"]),
    ):
        cols = min(len(panels), 3)
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
        for ax, market in zip(axes.ravel(), panels):
            part = frame[frame["market"] == market].sort_values("round")
            if frame is metrics:
                for model in ("federated", "local_only"):
                    series = part[part["model"] == model]
                    ax.plot(series["round"], series[value], marker="o", color=COLOURS[model], label=model.replace("_", "-"))
            else:
                ax.plot(part["round"], part["savings"], marker="o", color=COLOURS["federated"], label="federated")
                ax.plot(part["round"], part["local_only"], marker="o", color=COLOURS["local_only"], label="local-only")
                ax.axhline(0, color="#999", lw=0.8)
            ax.set_title(market, fontweight="bold" if market == "federation" else "normal")
            ax.set_xlabel("round")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
        for ax in axes.ravel()[len(panels):]:
            ax.set_visible(False)
        axes[0, 0].legend()
        fig.tight_layout()
        figs.append(_png(fig))
        plt.close(fig)
    return figs[0], figs[1]


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(frame: pd.DataFrame) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
        return html.escape(str(value))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _participation(rounds: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(who contributed how many rows each round, who was left out and why)."""
    rows, left = [], []
    for rec in rounds:
        rows.append({"round": rec["round"], "contributors": len(rec["contributors"]),
                     # None: a row count masked by secure fedavg, known to the centre only as part of a total
                     "training rows": sum(int(n) for n in rec["contributors"].values() if n is not None),
                     **{m: int(n) for m, n in sorted(rec["contributors"].items()) if n is not None}})
        left += [{"round": rec["round"], "market": m, "reason": why} for m, why in rec.get("dropped", {}).items()]
    return pd.DataFrame(rows).fillna(0), pd.DataFrame(left, columns=["round", "market", "reason"])


def _lineage(run_root: Path, rounds: list[dict]) -> str:
    models = pd.DataFrame([{"round": r["round"], "model": r["model"], "sha256": r["model_sha256"][:16] + "…",
                            "finished": r.get("finished", "")} for r in rounds])
    parts = [_table(models)]
    last = rounds[-1]
    lineage_file = (run_root / last["model"]).with_suffix(".lineage.json")
    if lineage_file.exists():
        lineage = json.loads(lineage_file.read_text())
        contract, code = lineage.get("contract", {}), lineage.get("code", {})
        parts.append(f"<p>Last model: contract <code>{html.escape(str(contract.get('suite')))}</code> "
                     f"{html.escape(str(contract.get('contract_version')))}; code "
                     f"<code>{html.escape(str(code.get('git_commit') or 'not a git checkout'))}</code>"
                     f"{' (uncommitted changes)' if code.get('git_dirty') else ''}; strategy "
                     f"<code>{html.escape(str(lineage.get('strategy')))}</code>.</p>")
        markets = pd.DataFrame([{"market": m, "train rows": v.get("train_rows"), "test rows": v.get("test_rows"),
                                 "train data fingerprint": str((v.get("fingerprint") or {}).get("train") or "")[:16],
                                 "contract": v.get("contract_version")}
                                for m, v in lineage.get("markets", {}).items()])
        parts.append(_table(markets))
    else:
        parts.append("<p>No lineage file for the last model (<code>models/round-NNN.lineage.json</code>): "
                     "contributors and row counts above come from <code>rounds.json</code>.</p>")
    return "".join(parts)


def write_report(run_root: str | Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``headline.png`` into the run folder; return their paths."""
    run_root = Path(run_root).resolve()
    needed = [run_root / name for name in ("metrics.parquet", "roi.parquet", "rounds.json")]
    missing = [p.name for p in needed if not p.exists()]
    if missing:
        raise ReportError(f"{run_root}: not a finished run folder (missing {', '.join(missing)})")
    metrics, roi = pd.read_parquet(needed[0]), pd.read_parquet(needed[1])
    rounds = sorted(json.loads(needed[2].read_text()), key=lambda r: r["round"])
    loss, other = headline_metrics(metrics.columns)
    headline_png, roi_png = _figures(metrics, roi)
    last = int(metrics["round"].max())
    summary = round_summary(metrics[metrics["round"] == last], roi[roi["round"] == last])
    total = roi[roi["market"] == "federation"].sort_values("round")
    participation, left_out = _participation(rounds)
    config = run_root / "federation.toml"
    name = run_root.name

    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>fedpipe report: {html.escape(name)}</title>
<style>{CSS}</style></head><body>
<h1>Run {html.escape(name)}</h1>
<p class="sub">{len(rounds)} round(s), {metrics.loc[metrics['market'] != 'federation', 'market'].nunique()} market(s) evaluated; report written
{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Every number is one a market computed on its own held-out data.</p>
<h2>Last round (round {last}): federated vs local-only</h2>
{_table(summary)}
<h2>{html.escape(LABELS.get(loss, loss))} per market over rounds</h2>
<p>Federated: the global model; local-only: the same number of boosting steps on the market's own rows only.</p>
{_img(headline_png, f"{loss} per market over rounds, federated vs local-only")}
<h2>Business value over rounds</h2>
<p>Savings per market and for the federation (costs summed over markets before dividing), federated vs local-only.</p>
{_img(roi_png, "savings per market and federation over rounds")}
<h2>The federation total</h2>
{_table(total[["round", "cost_no_model", "cost_model", "savings", "programme_cost", "roi", "savings_local_only", "roi_local_only", "savings_vs_local_only"]])}
<h2>Participation, and markets left out</h2>
{_table(participation)}
{_table(left_out) if len(left_out) else "<p>No market was left out of any round.</p>"}
<h2>Lineage</h2>
{_lineage(run_root, rounds)}
<p>Federation file: <code>{html.escape(str(config if config.exists() else "not kept"))}</code>.
Headline metric {html.escape(loss)}, also shown: {html.escape(other)}.</p>
</body></html>
"""
    report, png = run_root / "report.html", run_root / "headline.png"
    atomic_write_bytes(png, headline_png)
    atomic_write_bytes(report, page.encode())
    return report, png
