"""`originprobe enroll`: add a new generator to a saved model from a few images.

Only the new images are extracted. kNN, NCM, Gaussian and reference heads add the class in place;
the linear head refits on the cached training features of the other classes (the cache named in
the bundle) plus the new ones. The reject threshold is kept: it was calibrated on known-class
validation data and there is no validation data for the new class. The bundle is rewritten
atomically, so an interrupted enrolment leaves the previous model intact.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..data import Problem
from ..features import extract_features, open_store
from .bundle import BundleError, save_bundle
from .predict import load_model
from .prepare import base_layers, collect_images


def enroll(model_dir: str | Path, label: str, paths: Sequence[str | Path],
           weights: str | None = None, progress: bool = False, workers: int | None = 0
           ) -> tuple[int, list[Problem]]:
    bundle, backbone = load_model(model_dir, weights=weights)
    if not label or label == "unknown":
        raise ValueError(f"invalid class name {label!r}")
    if label in bundle.known_classes:
        raise ValueError(f"{model_dir}: class {label!r} is already known")
    samples, problems = collect_images(paths)
    training = bundle.extra.get("training_set", {})
    cache = training.get("cache")
    if not cache or not Path(cache).is_dir():
        raise BundleError(f"{model_dir}: the feature cache it was trained from ({cache}) is not "
                          "available; enrolment needs it")
    store = open_store(cache, backbone)
    layers = bundle.layer.split("+")
    report = extract_features(samples, backbone, store, base_layers([bundle.layer]),
                              num_workers=workers, progress=progress)
    problems += report.errors
    failed = {p.path for p in report.errors}
    ok = [s for s in samples if s.sha256 and str(s.path) not in failed]
    if not ok:
        raise ValueError(f"no readable images to enrol as {label!r}")
    X = np.hstack([store.load([s.sha256 for s in ok], l) for l in layers])
    head = bundle.head
    if head.name == "linear":
        hashes, labels = training.get("hashes", []), training.get("labels", [])
        X_train = np.hstack([store.load(hashes, l) for l in layers])
        head.add_class(X, label, X_train=X_train, y_train=np.array(labels, dtype=object))
    else:
        head.add_class(X, label)
    training["hashes"] = list(training.get("hashes", [])) + [s.sha256 for s in ok]
    training["labels"] = list(training.get("labels", [])) + [label] * len(ok)
    bundle.extra["training_set"] = training
    bundle.extra.setdefault("enrolled", []).append({"label": label, "images": len(ok)})
    bundle.known_classes = [str(c) for c in head.classes_]
    save_bundle(bundle, model_dir)
    return len(ok), problems
