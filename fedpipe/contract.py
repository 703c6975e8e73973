"""Validate a market's table against its use case's data contract (a Great Expectations suite).

The validation runs inside the market. Only a :class:`ValidationSummary` leaves it: which expectations
failed, with counts and aggregates (row counts, a column mean, a dtype), never rows or values of rows.

Public API: :func:`load_suite`, :func:`contract_version`, :func:`validate_table`, :class:`ValidationSummary`.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fedpipe.errors import ConfigError, MarketDataError

if TYPE_CHECKING:  # great_expectations takes 2-3 s to import; only validation pays for it.
    from great_expectations import ExpectationSuite

logger = logging.getLogger(__name__)

# Expectations that compare a column's values with numbers: GE cannot evaluate them on text, so the
# pre-check rejects a non-numeric dtype in such a column before GE runs.
_NUMERIC_EXPECTATIONS = frozenset(
    {
        "expect_column_values_to_be_between",
        "expect_column_mean_to_be_between",
        "expect_column_median_to_be_between",
        "expect_column_min_to_be_between",
        "expect_column_max_to_be_between",
        "expect_column_sum_to_be_between",
        "expect_column_stdev_to_be_between",
    }
)
# All calls share one cached ephemeral GE context, which GE does not document as thread-safe.
_GX_LOCK = threading.Lock()


@dataclass
class ValidationSummary:
    """What one market may share about validating one table: verdict, counts, failed expectations.

    ``evaluated``/``passed`` count the suite's expectations GE evaluated; both are 0 when the
    pre-check (not a DataFrame, missing or non-numeric columns) stopped validation before GE.
    Each failure is ``{"expectation": type, "field": column or None, "problem": sentence}``.
    """

    market: str
    file: str
    suite: str
    contract_version: str
    success: bool
    n_rows: int
    evaluated: int
    passed: int
    failures: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """A JSON-serialisable copy, safe to send out of the market."""
        return asdict(self)

    def error(self) -> MarketDataError:
        """The :class:`MarketDataError` for the first failure, noting how many others failed."""
        if not self.failures:
            raise ValueError(f"market '{self.market}': {self.file} passed the contract; there is no error")
        first, others = self.failures[0], len(self.failures) - 1
        problem = f"{first['problem']} ({first['expectation']}, contract {self.suite} {self.contract_version})"
        if others:
            problem += f"; {others} other expectation{'s' if others > 1 else ''} failed too"
        return MarketDataError(self.market, self.file, first["field"], problem)

    def raise_for_failure(self) -> None:
        """Raise :meth:`error` if the table broke the contract."""
        if not self.success:
            raise self.error()


def load_suite(path: str | Path) -> ExpectationSuite:
    """Read a GE 1.x suite JSON file; cached per process until the file changes.

    Raises :class:`ConfigError` naming the file and the bad field if the suite is unreadable,
    has no ``meta.contract_version`` or holds an expectation GE does not accept.
    """
    path = Path(path).resolve()
    try:
        mtime = path.stat().st_mtime_ns
    except OSError as exc:
        raise ConfigError(str(path), "suite", f"cannot read the expectation suite: {exc.strerror}") from exc
    return _load_suite(path, mtime)


def contract_version(path: str | Path) -> str:
    """The suite's ``meta.contract_version``, e.g. ``"1.0.0"``."""
    return load_suite(path).meta["contract_version"]


def validate_table(df: pd.DataFrame, *, suite_path: Path, market: str, file: str) -> ValidationSummary:
    """Validate ``df`` against the suite at ``suite_path`` and summarise the outcome.

    Args:
        df: the market's table (for a use case, ``MarketData.train``).
        suite_path: the use case's ``expectations/<suite>.json``.
        market: market name, for the summary and error messages.
        file: the file ``df`` came from, for the summary and error messages.

    Returns:
        A :class:`ValidationSummary`; call ``raise_for_failure()`` on it to turn a failure into an error.
    """
    suite = load_suite(suite_path)
    n_rows = len(df) if isinstance(df, pd.DataFrame) else 0
    head = dict(market=market, file=str(file), suite=suite.name, contract_version=suite.meta["contract_version"], n_rows=n_rows)

    failures = _precheck(df, suite)
    if failures:
        return ValidationSummary(**head, success=False, evaluated=0, passed=0, failures=failures)

    with _GX_LOCK:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": df})
        # BASIC gives counts; partial_unexpected_count=0 stops GE collecting row values we would discard.
        result = batch.validate(suite, result_format={"result_format": "BASIC", "partial_unexpected_count": 0})

    failures = []
    for res in result.results:
        if not res.success:
            errors = _raised(res.exception_info)
            failures.append(_failure(res.expectation_config.type, res.expectation_config.kwargs, res.result, errors, df))
            if errors:
                # The message may quote a row value: never in the summary, and only at DEBUG in the log.
                logger.warning("market %s: %s: GE could not evaluate %s", market, file, res.expectation_config.type)
                logger.debug("GE error: %s", "; ".join(errors))
    return ValidationSummary(
        **head,
        success=bool(result.success),
        evaluated=result.statistics["evaluated_expectations"],
        passed=result.statistics["successful_expectations"],
        failures=failures,
    )


@functools.cache
def _gx():
    """Import great_expectations with its INFO chatter (import-time and per-context messages) muted."""
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    # data_context/types/base.py pins its own logger to INFO, overriding the parent's level.
    logging.getLogger("great_expectations.data_context.types.base").setLevel(logging.WARNING)
    return gx


@functools.lru_cache(maxsize=16)
def _load_suite(path: Path, mtime_ns: int) -> ExpectationSuite:
    gx = _gx()
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), "suite", f"not a readable JSON expectation suite: {exc}") from exc
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ConfigError(str(path), "name", "missing; a suite is a JSON object with a name, expectations and meta")
    if not isinstance(spec.get("meta"), dict) or not isinstance(spec["meta"].get("contract_version"), str):
        raise ConfigError(str(path), "meta.contract_version", "missing; the suite must state its contract version")
    # ExpectationSuite(expectations=...) logs and silently drops an invalid expectation; build each one
    # here so a bad entry fails loudly instead of weakening the contract.
    expectations = []
    for i, exp in enumerate(spec.get("expectations", [])):
        try:
            expectations.append(ExpectationConfiguration(**exp).to_domain_obj())
        except Exception as exc:  # GE raises several unrelated types for a bad configuration
            raise ConfigError(str(path), f"expectations[{i}]", f"not a valid expectation: {exc}") from exc
    return gx.ExpectationSuite(name=spec["name"], expectations=expectations, meta=spec["meta"])


@functools.cache
def _batch_definition():
    """One ephemeral GE context per process, with a pandas dataframe asset and a whole-frame batch."""
    gx = _gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("fedpipe").add_dataframe_asset("table")
    return asset.add_batch_definition_whole_dataframe("whole table")


def _precheck(df: Any, suite: ExpectationSuite) -> list[dict]:
    """Cheap structural checks GE would crash on or report confusingly: type, columns, numeric dtypes."""
    if not isinstance(df, pd.DataFrame):
        return [_fail("table_is_dataframe", None, f"expected a pandas DataFrame, got {type(df).__name__}")]
    duplicated = df.columns[df.columns.duplicated()].unique()
    if len(duplicated):
        return [_fail("expect_table_columns_to_match_set", str(c), f"column appears {int((df.columns == c).sum())} times") for c in duplicated]
    expected, numeric = _columns(suite)
    failures = [_fail("expect_table_columns_to_match_set", c, "column is missing") for c in expected if c not in df.columns]
    for col in numeric:
        if col in df.columns and not _is_number_dtype(df[col]):
            values = df[col]
            bad = int((pd.to_numeric(values, errors="coerce").isna() & values.notna()).sum())
            problem = f"dtype {values.dtype} is not numeric"
            if bad:
                problem += f": {bad} of {len(values)} values are not numbers"
            failures.append(_fail("expect_column_values_to_be_in_type_list", col, problem))
    return failures


def _columns(suite: ExpectationSuite) -> tuple[list[str], list[str]]:
    """The columns the suite requires, and those it compares with numbers."""
    expected: list[str] = []
    numeric: list[str] = []
    for exp in suite.expectations:
        kind, kwargs = exp.configuration.type, exp.configuration.kwargs
        if kind == "expect_table_columns_to_match_set":
            expected = list(kwargs["column_set"])
        elif kind == "expect_table_columns_to_match_ordered_list":
            expected = list(kwargs["column_list"])
        elif kind in _NUMERIC_EXPECTATIONS and kwargs["column"] not in numeric:
            numeric.append(kwargs["column"])
    return expected, numeric


def _is_number_dtype(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _fail(expectation: str, field: str | None, problem: str) -> dict:
    return {"expectation": expectation, "field": field, "problem": problem}


def _raised(exception_info: dict | None) -> list[str]:
    """The messages of the errors GE caught while evaluating one expectation.

    GE 1.24 uses two shapes: ``{"raised_exception": ..., "exception_message": ...}``, and, when a
    metric failed, ``{<metric id>: {"raised_exception": ..., ...}, ...}``.
    """
    infos = [exception_info or {}] + [v for v in (exception_info or {}).values() if isinstance(v, dict)]
    return [str(i.get("exception_message")) for i in infos if i.get("raised_exception")]


def _failure(kind: str, kwargs: dict, result: dict, errors: list[str], df: pd.DataFrame) -> dict:
    """Turn one failed GE result into a failure dict, reading only counts and aggregates from it."""
    column = kwargs.get("column")
    if "column_list" in kwargs:
        column = ", ".join(kwargs["column_list"])
    if errors:
        return _fail(kind, column, "could not be evaluated (GE raised an error; see the market's log)")
    n, bad = result.get("element_count"), result.get("unexpected_count")
    observed = result.get("observed_value")
    if kind == "expect_table_columns_to_match_set":
        mismatched = result.get("details", {}).get("mismatched", {})
        missing, extra = mismatched.get("missing", []), mismatched.get("unexpected", [])
        parts = [f"missing {missing}"] if missing else []
        parts += [f"unexpected {extra}"] if extra else []
        return _fail(kind, (missing + extra or [None])[0], "columns differ from the contract: " + "; ".join(parts))
    if kind == "expect_table_row_count_to_be_between":
        return _fail(kind, None, f"{observed} rows, the contract needs {_range(kwargs)}")
    if kind == "expect_column_values_to_be_in_type_list" and bad is None:
        # GE reports dtype.type.__name__ ("int64" for Int64Dtype too); the frame's own dtype is clearer.
        dtype = df[column].dtype if column in df.columns else observed
        return _fail(kind, column, f"dtype {dtype} is not one of {', '.join(kwargs['type_list'])}")
    if kind == "expect_column_distinct_values_to_contain_set":
        # GE 1.24 leaves observed_value None here and reports only how many required values are absent.
        absent = result.get("missing_count")
        return _fail(kind, column, f"{absent} of the required values {kwargs['value_set']} never occur{'s' if absent == 1 else ''}")
    if kind.startswith("expect_column_") and kind.endswith("_to_be_between") and bad is None:
        stat = kind.removeprefix("expect_column_").removesuffix("_to_be_between")
        if observed is None:
            return _fail(kind, column, f"{stat} is undefined (no values), the contract needs {_range(kwargs)}")
        if stat in ("min", "max", "median"):  # these are a row's value: say only that it is out of range
            return _fail(kind, column, f"{stat} outside {_range(kwargs)}")
        return _fail(kind, column, f"{stat} {_num(observed)} outside {_range(kwargs)}")
    if bad is not None:
        what = {
            "expect_column_values_to_not_be_null": "values are null",
            "expect_column_values_to_be_between": f"values outside {_range(kwargs)}",
            "expect_column_values_to_be_in_set": f"values not in {kwargs.get('value_set')}",
            "expect_compound_columns_to_be_unique": f"rows repeat another row's ({column})",
            "expect_column_values_to_be_unique": "values repeat",
            "expect_column_values_to_be_in_type_list": f"values not of type {', '.join(kwargs.get('type_list') or [])}",
        }.get(kind, "values fail")
        return _fail(kind, column, f"{bad} of {n} {what}")
    return _fail(kind, column, "failed")  # an unknown observed_value may be a row's value: leave it out


def _range(kwargs: dict) -> str:
    lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
    if hi is None:
        return f"at least {_num(lo)}"
    if lo is None:
        return f"at most {_num(hi)}"
    return f"[{_num(lo)}, {_num(hi)}]"


def _num(x: Any) -> str:
    """A bound or aggregate as a short string: 680.0 -> "680", 0.1234567 -> "0.1235"."""
    if isinstance(x, float):
        return str(int(x)) if x.is_integer() else f"{x:.4g}"
    return str(x)
