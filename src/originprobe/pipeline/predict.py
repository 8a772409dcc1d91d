"""`originprobe predict`: attribute image files with a saved bundle.

Each image gets the predicted known class or `unknown` (score below the bundle's threshold), the
open-set score and the top-3 known classes with probabilities. Unreadable files are reported and
skipped; the others are still attributed.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..backbones import load_backbone
from ..data import Problem
from ..features import extract_features, open_store
from ..openset import UNKNOWN, scores_from_decision
from .bundle import Bundle, BundleError, load_bundle
from .prepare import base_layers, collect_images


@dataclass
class Prediction:
    path: str
    label: str               # a known class or "unknown"
    closest: str             # the best known class, even when rejected
    score: float
    threshold: float
    top: list[tuple[str, float]]

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "closest_known": self.closest,
                "score": self.score, "threshold": self.threshold,
                "top": [{"label": l, "probability": p} for l, p in self.top]}


def load_model(model_dir: str | Path, weights: str | None = None):
    bundle = load_bundle(model_dir)
    backbone = load_backbone(bundle.backbone["name"], weights=weights)
    if backbone.weights_id != bundle.backbone["weights_id"]:
        raise BundleError(
            f"{model_dir}: fitted with {bundle.backbone['name']} weights "
            f"{bundle.backbone['weights_id'][:16]}, but the weights found here are "
            f"{backbone.weights_id[:16]}; pass the original weights with --weights")
    from ..backbones import Preprocessing
    if backbone.preprocessing != Preprocessing.from_dict(bundle.backbone["preprocessing"]):
        raise BundleError(f"{model_dir}: the backbone's preprocessing differs from the one the "
                          "model was fitted with")
    return bundle, backbone


def predict_paths(bundle: Bundle, backbone, paths: Sequence[str | Path], cache: str | None = None,
                  batch_size: int | None = None, workers: int | None = 0, progress: bool = False,
                  device: str | None = None) -> tuple[list[Prediction], list[Problem]]:
    samples, problems = collect_images(paths)
    with tempfile.TemporaryDirectory(prefix="originprobe-predict-") as tmp:
        store = open_store(cache or tmp, backbone)
        report = extract_features(samples, backbone, store, base_layers([bundle.layer]),
                                  batch_size=batch_size, num_workers=workers, progress=progress,
                                  device=device)
        problems += report.errors
        failed = {p.path for p in report.errors}
        ok = [s for s in samples if str(s.path) not in failed and s.sha256]
        if not ok:
            return [], problems
        X = np.hstack([store.load([s.sha256 for s in ok], l) for l in bundle.layer.split("+")])
    head = bundle.head
    decision = head.decision_function(X)
    scores = scores_from_decision(bundle.score, decision)
    proba = head.predict_proba(X)
    out = []
    for s, d, sc, pr in zip(ok, decision, scores, proba):
        order = np.argsort(-pr)[:3]
        closest = str(head.classes_[order[0]])
        out.append(Prediction(
            path=str(s.path), label=closest if sc >= bundle.threshold else UNKNOWN,
            closest=closest, score=float(sc), threshold=bundle.threshold,
            top=[(str(head.classes_[i]), float(pr[i])) for i in order]))
    return out, problems
