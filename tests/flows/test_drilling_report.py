"""The drilling use case through the unchanged round flow, and its report opened in headless Chromium."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import pandas as pd
import pytest
import tomli_w
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from fedpipe.report import write_report
from flows.round import federated_training

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "usecases" / "drilling_efficiency" / "data"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def drilling_run(tmp_path_factory):
    """Four wells, two rounds of two trees; well F-9's file is corrupt, so it is left out with the reason."""
    tmp = tmp_path_factory.mktemp("drilling")
    markets = {}
    for well in ("F-9A", "F-7", "F-5", "F-9"):
        folder = tmp / "markets" / well
        shutil.copytree(DATA / well, folder)
        markets[well] = {"data": str(folder), "subsample": 0.3, "state": str(tmp / "state" / well)}
    (tmp / "markets" / "F-9" / "well.parquet").write_bytes(b"PAR1 not a parquet file")
    doc = {
        "federation": {"name": "drill-test", "usecase": "drilling_efficiency", "rounds": 2, "trees_per_round": 2,
                       "quorum": 3, "runs_dir": str(tmp / "runs"), "keys_dir": str(tmp / "keys")},
        "model": {"max_depth": 4, "eta": 0.3, "base_score": 40.0},
        "roi": {"rig_spread_rate_per_day": 300000, "programme_cost_per_hour": 150},
        "markets": markets,
    }
    config = tmp / "volve.toml"
    config.write_bytes(tomli_w.dumps(doc).encode())
    return Path(federated_training(config=str(config)))


def test_regression_metrics_and_drilling_roi_are_recorded(drilling_run):
    metrics = pd.read_parquet(drilling_run / "metrics.parquet")
    assert {"mae", "rmse", "r2"} <= set(metrics.columns) and "auc" not in metrics.columns
    assert sorted(metrics["market"].unique()) == ["F-5", "F-7", "F-9A", "federation"]  # + summed statistics
    assert (metrics["mae"] > 0).all() and (metrics["mae"] < 40).all()
    roi = pd.read_parquet(drilling_run / "roi.parquet")
    last = roi[roi["round"] == 2].set_index("market")
    assert last.loc["federation", "cost_no_model"] == pytest.approx(last.drop(index="federation")["cost_no_model"].sum())
    assert (last["cost_no_model"] > 0).all()  # actual rig cost of each held-out section
    rounds = json.loads((drilling_run / "rounds.json").read_text())
    assert all("F-9" in r["dropped"] and "well.parquet" in r["dropped"]["F-9"] for r in rounds)


def test_round_summary_artifacts_are_keyed_per_federation(drilling_run):
    async def versions(key):
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))

    tables = asyncio.run(versions("drill-test-round-summary"))
    assert len(tables) >= 2 and "ROI federated" in json.dumps(tables[0].data)
    stories = asyncio.run(versions("drill-test-round-report"))
    assert stories and "F-9" in stories[0].data and "left out" in stories[0].data


def test_report_is_self_contained_and_names_who_was_left_out(drilling_run):
    page, png = write_report(drilling_run)
    text = page.read_text()
    assert png.read_bytes().startswith(b"\x89PNG")
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', text)) == 2
    assert not re.search(r'(src|href)="(https?:|//)', text)  # nothing fetched from the network
    assert "F-9" in text and "well.parquet" in text  # the left-out market and why
    assert "MAE" in text and "Lineage" in text and "federation" in text


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_renders_with_its_plots_in_headless_chromium(drilling_run, tmp_path):
    page, _ = write_report(drilling_run)
    # A copy with a probe that records, once loaded, how many images decoded with a real size.
    probe = ("<script>window.addEventListener('load',()=>{const i=[...document.images];"
             "document.body.insertAdjacentHTML('beforeend','<p id=\"probe\">loaded '+"
             "i.filter(x=>x.complete&&x.naturalWidth>0).length+' of '+i.length+' widths '+"
             "i.map(x=>x.naturalWidth).join(',')+'</p>')});</script>")
    checked = tmp_path / "report.html"
    checked.write_text(page.read_text().replace("</body>", probe + "</body>"))
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*common, "--dump-dom", checked.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'<p id="probe">loaded (\d+) of (\d+) widths ([\d,]+)</p>', dom.stdout)
    assert found, dom.stderr[-2000:]
    assert found.group(1) == found.group(2) == "2" and all(int(w) > 300 for w in found.group(3).split(","))

    shot = tmp_path / "shot.png"
    subprocess.run([*common, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    pixels = mpimg.imread(shot)
    assert pixels.shape[0] >= 1500 and pixels[..., :3].std() > 0.05  # not a blank page
