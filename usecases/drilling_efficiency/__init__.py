"""Drilling efficiency on the USROP (Volve) wells: rate of penetration from drilling parameters.

Four markets, one per well (F-9A, F-7, F-5, F-9), vendored in ``data/`` (CC BY-NC-SA 4.0, see ``data/LICENSE``).
Each well trains on its upper rows and is evaluated on its deepest 20 %; the business value is the rig time its
weight-on-bit and rotary-speed recommendations would save there (``roi.py``).
"""

from fedpipe.usecase import UseCase

from .data import LABEL, check_options, load_market, read_defaults
from .features import model_inputs
from .roi import drilling_value

USECASE = UseCase(
    name="drilling_efficiency",
    suite="drilling_efficiency",
    objective="reg:squarederror",
    label=LABEL,
    load=load_market,
    features=model_inputs,
    business_value=drilling_value,
    value_uses_model=True,
    defaults=read_defaults(),
    check_options=check_options,
)

__all__ = ["USECASE", "drilling_value", "load_market", "model_inputs"]
