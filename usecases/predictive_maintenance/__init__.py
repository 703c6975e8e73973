"""Predictive maintenance on NASA C-MAPSS: will this engine fail within ``horizon`` cycles?

Four markets, one per subset FD001-FD004 (vendored in ``data/``). Each market trains on its run-to-failure
engines and is evaluated on its own test engines with their true remaining useful life.
"""

from fedpipe.usecase import UseCase

from .data import LABEL, check_options, load_market, read_defaults
from .features import build_features, model_inputs
from .roi import maintenance_value
from .rul import RUL_TASK

USECASE = UseCase(
    name="predictive_maintenance",
    suite="predictive_maintenance",
    objective="binary:logistic",
    label=LABEL,
    load=load_market,
    features=model_inputs,
    business_value=maintenance_value,
    defaults=read_defaults(),
    check_options=check_options,
    tasks={"rul": RUL_TASK},  # [usecase] task = "rul": capped remaining useful life, regression
)

__all__ = ["USECASE", "build_features", "load_market", "maintenance_value"]
