"""A saved `Attributor` read back (`restore`, behind `Attributor.load`) and described
(`description`, behind `Attributor.describe`): the bundle's parts set on a new estimator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._version import __version__
from .bundle import read_model
from .estimator import OpenSetClassifier
from .extractor import FEATURES
from .hub import fetch_bundle, is_hub_ref


def restore(cls, model_dir: str | Path, weights: str | None, settings: dict[str, Any]):
    """An instance of `cls` (an Attributor) from bundle `model_dir` (a folder or an hf:// ref)."""
    source = None
    if is_hub_ref(model_dir):
        model_dir, source = fetch_bundle(str(model_dir))
    parts = read_model(model_dir)
    meta = parts.meta
    params = {k: v for k, v in meta["params"].items() if k not in ("runtime", "weights")}
    att = cls(**params, weights=weights)
    att.backbone = meta["backbone"]["name"] or FEATURES
    att.set_runtime(**settings)
    att.backbone_info_ = dict(meta["backbone"])
    att._networks = parts.networks
    att.layer_ = parts.layer
    att.classifier_ = OpenSetClassifier.from_parts(
        parts.head, parts.score, float(meta["threshold"]), parts.reference,
        target_tpr=float(params["target_tpr"]), selection=params.get("selection"),
        seed=int(params["seed"]),
    )  # fmt: skip
    att.selection_summary_ = meta["selection"]
    att.counts_, att.enrolled_, att.bundle_meta_ = meta["counts"], meta["enrolled"], meta
    att.hub_source_ = source or {}
    card = meta.get("card") or {}
    att.training_data_, att.card_test_ = card.get("training_data"), card.get("test")
    return att


def description(att) -> dict:
    """What a fitted model is (for `GET /v1/model` and reports)."""
    att._check_fitted()
    info = getattr(att, "backbone_info_", None) or att._backbone_info()
    return {
        "classes": list(att.classes_),
        "backbone": dict(info),
        "layer": str(att.layer_),
        "head": {"name": att.head_.name, "params": att.head_.get_params()},
        "score": att.score_name_,
        "threshold": float(att.threshold_),
        "target_tpr": float(att.target_tpr),
        "estimate": (getattr(att, "selection_summary_", {}) or {}).get("estimate"),
        "enrolled": getattr(att, "enrolled_", []),
        "originprobe_version": __version__,
        **({"source": dict(att.hub_source_)} if getattr(att, "hub_source_", None) else {}),
    }
