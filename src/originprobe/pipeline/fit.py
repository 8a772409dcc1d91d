"""`originprobe fit`: fit an Attributor on the known classes and save it as a bundle.

Every known-class image is used: cross-validation on them chooses the layer set, the fusion
members, the head's parameters and the score; out-of-fold scores set the reject threshold at the
target TPR (default 0.85); the head is then refitted on all of them (`model.attributor`).
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
