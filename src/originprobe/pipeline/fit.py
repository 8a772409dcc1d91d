"""`originprobe fit`: train an Attributor on known classes and save it as a bundle.

Known classes are split train/validation (stratified, seeded). Layer and hyper-parameters are
chosen on validation, the head is fitted on train, and the reject threshold is calibrated on the
validation scores for the target TPR (default: keep 95% of known validation samples).
"""

from __future__ import annotations

from pathlib import Path

from ..fileio import check_model_dir
from ..model import Attributor
from .fitting import fit_prepared
from .prepare import RunConfig, prepare


def fit(cfg: RunConfig, out_dir: str | Path) -> Attributor:
    out = check_model_dir(out_dir)
    p = prepare(cfg, with_test=False)
    att = fit_prepared(p)
    att.save(out)
    return att
