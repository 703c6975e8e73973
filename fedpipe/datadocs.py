"""Great Expectations Data Docs for one market, built where its data lives (``fedpipe validate``).

The HTML site goes into the market's private state folder (``<state>/<federation>/data-docs/index.html``): it
may show sample values of failing rows, so it never leaves the market. Only the
:class:`fedpipe.contract.ValidationSummary` (counts, no rows) is what the market shares.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fedpipe import contract


def build_data_docs(tables: dict[str, pd.DataFrame], suite_path: Path, out_dir: Path, market: str) -> Path:
    """Validate each table (name -> frame) with a GE checkpoint whose action renders Data Docs into ``out_dir``.

    Uses a fresh ephemeral GE context with one filesystem Data Docs site; returns the site's ``index.html``.
    """
    gx = contract._gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    suite = contract.load_suite(suite_path)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.add_data_docs_site(site_name=market, site_config={
        "class_name": "SiteBuilder",
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(out_dir)},
    })
    suite = context.suites.add(gx.ExpectationSuite(name=suite.name, expectations=list(suite.expectations),
                                                   meta=suite.meta))
    source = context.data_sources.add_pandas(market)
    for name, frame in tables.items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole table")
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"{market}-{name}", data=batch, suite=suite))
        checkpoint = context.checkpoints.add(gx.Checkpoint(
            name=f"{market}-{name}", validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data docs", site_names=[market])],
            result_format={"result_format": "SUMMARY"}))
        checkpoint.run(batch_parameters={"dataframe": frame})
    return out_dir / "index.html"
