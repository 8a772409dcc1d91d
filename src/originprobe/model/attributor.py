"""`Attributor`: the fitted model — backbone, layer, head, open-set score and reject threshold.

This is the one place where the decision "which known class, or unknown" is made
(`Attributor.decide`); evaluation, studies, reports, the command line and the HTTP service all
call it and never re-implement argmax or thresholding.

    from originprobe import Attributor
    att = Attributor(backbone="efficientnet-lite0", head="linear", score="msp")
    att.fit("../shared/data/realgen", known=["real", "dalle-mini", "latent-diffusion"])
    for a in att.predict(["a.png", "b.jpg"]):
        print(a.source, a.label, a.score, a.probabilities)
    att.save("model/"); att = Attributor.load("model/")
    att.enroll("midjourney-v3", ["mj1.png", "mj2.png"])

Fitting splits the known-class data into train and validation (stratified, seeded): train fits
every (layer, hyper-parameter) candidate, validation chooses among them, and calibrates the
threshold that keeps `target_tpr` of the known validation images. Unknown classes never reach
`fit`. With `--score msp` the score shown is the top-1 probability shown, for every head.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from .._version import __version__
from ..backbones import DEFAULT_BACKBONE, Backbone, Preprocessing, load_backbone
from ..backbones.learned import learned_members
from ..data import Dataset, Problem, Sample, hash_samples, load_dataset, make_split
from ..data.samples import without_failed
from ..data.splits import per_class_subset, stratified_indices
from ..errors import ConfigError
from ..features import (
    ImageInput,
    LayerRows,
    LayerSpec,
    base_layers,
    extract_arrays,
    extract_features,
    open_store,
    parse_layer_list,
)
from ..features.store import StoreRows
from ..heads import HEADS, Head, head_factory
from ..heads.selection import select_head
from ..openset import (
    UNKNOWN,
    OpenSetScore,
    calibrate_threshold,
    check_supported,
    check_target_tpr,
    fit_score,
)
from ..provenance import Evidence, EvidenceReader, compare
from ..training import TrainConfig
from ..training.cache import learned_names, networks_dir, train_members
from .bundle import BundleError, network_file, read_model, write_bundle

FEATURES = "features"  # the layer name of features handed to `fit_features` as one array

#: the hyper-parameter defaults of a fitted model, used by `Attributor`, `RunConfig` and the CLI
DEFAULTS: dict[str, Any] = {
    "head": "linear",
    "combine_layers": 3,
    "target_tpr": 0.95,
    "seed": 0,
    "val_fraction": 0.25,
    "reference_per_class": 2000,
    "top_k": 3,
}


def check_params(
    head: str = DEFAULTS["head"],
    score: str | None = None,
    target_tpr: float = DEFAULTS["target_tpr"],
    combine_layers: int = DEFAULTS["combine_layers"],
    seed: int = DEFAULTS["seed"],
    val_fraction: float = DEFAULTS["val_fraction"],
    top_k: int = DEFAULTS["top_k"],
    head_params: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
) -> str:
    """Every rule on a model's hyper-parameters, in one place; returns the score name."""
    head_cls = HEADS.get(head)
    score = score or head_cls.default_score
    check_supported(head_cls, score)
    check_target_tpr(target_tpr)
    for name, value, lowest in (
        ("combine_layers", combine_layers, 1),
        ("seed", seed, 0),
        ("top_k", top_k, 1),
        ("batch size", batch_size, 1),
    ):
        if value is not None and int(value) < lowest:
            raise ConfigError(f"{name} must be ≥ {lowest}, got {value}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if head_params:
        bad = set(head_params) - set(head_cls().get_params())
        if bad:
            raise ConfigError(f"head {head!r} has no parameter(s) {sorted(bad)}")
    return score


@dataclass
class Attribution:
    """The answer for one input image."""

    source: str  # the path, or "<bytes #i>", "<image #i>" ...
    label: str | None  # a known class or "unknown"; None on error
    closest: str | None = None  # the most likely known class, even if rejected
    score: float | None = None  # open-set score, higher = more likely known
    threshold: float | None = None  # below it the label is "unknown"
    probabilities: list[tuple[str, float]] = field(default_factory=list)  # top-k, descending
    error: str | None = None  # why the input could not be used
    warning: str | None = None  # used, but something is wrong with it
    evidence: Evidence | None = None  # what the file's metadata claims (never mixed
    # into the verdict); None for in-memory images

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "label": self.label,
            "closest": self.closest,
            "score": self.score,
            "threshold": self.threshold,
            "probabilities": [{"label": l, "probability": p} for l, p in self.probabilities],
            "error": self.error,
            "warning": self.warning,
            "evidence": self.evidence.to_dict() if self.evidence is not None else None,
        }


@dataclass
class Decisions:
    """Vectorised decisions for n feature rows (what evaluation reads)."""

    classes: list[str]
    closest: np.ndarray  # (n,) object: best known class
    label: np.ndarray  # (n,) object: closest, or "unknown" below the threshold
    score: np.ndarray  # (n,) float
    proba: np.ndarray  # (n, K) the head's posterior
    threshold: float


class Attributor(BaseEstimator):
    """Open-set origin attribution: a known generator, "real", or unknown (see module doc).

    A scikit-learn estimator: `__init__` only stores its arguments, `fit` validates them
    (`check_params`), learned state ends in `_` and is set by this class's own methods only,
    and `sklearn.base.clone` works. `get_params` lists the hyper-parameters; the runtime settings
    (`RUNTIME`: where and how it runs, never what it computes) are not among them and are
    changed with `set_runtime`.
    """

    bundle_meta_: dict[str, Any]  # set by `load`: the bundle's model.json

    RUNTIME = ("device", "batch_size", "workers", "cache", "progress", "runtime", "provenance",
               "c2pa_trust", "engine", "address")  # fmt: skip

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        layers: str | Sequence[str] = "all",
        head: str = DEFAULTS["head"],
        score: str | None = None,
        target_tpr: float = DEFAULTS["target_tpr"],
        combine_layers: int = DEFAULTS["combine_layers"],
        head_params: Mapping[str, Any] | None = None,
        weights: str | None = None,
        seed: int = DEFAULTS["seed"],
        val_fraction: float = DEFAULTS["val_fraction"],
        reference_per_class: int = DEFAULTS["reference_per_class"],
        device: str | None = None,
        batch_size: int | None = None,
        workers: int | None = None,
        cache: str | None = None,
        progress: bool = False,
        top_k: int = DEFAULTS["top_k"],
        runtime: str = "auto",
        provenance: bool = True,
        c2pa_trust: str | None = None,
        engine: str = "local",
        address: str | None = None,
    ):
        self.backbone = backbone
        self.layers = layers
        self.head = head
        self.score = score
        self.target_tpr = target_tpr
        self.combine_layers = combine_layers
        self.head_params = head_params
        self.weights = weights
        self.seed = seed
        self.val_fraction = val_fraction
        self.reference_per_class = reference_per_class
        self.device = device
        self.batch_size = batch_size
        self.workers = workers
        self.cache = cache
        self.progress = progress
        self.top_k = top_k
        self.runtime = runtime
        self.provenance = provenance
        self.c2pa_trust = c2pa_trust
        self.engine = engine
        self.address = address
        self._backbone_obj: Backbone | None = None
        self._networks: dict[str, str] = {}  # learned:ARCH member → its network file
        self._evidence_reader: EvidenceReader | None = None

    @classmethod
    def _get_param_names(cls) -> list[str]:
        return [p for p in super()._get_param_names() if p not in cls.RUNTIME]

    def set_runtime(self, **settings: Any) -> Attributor:
        """Change where and how the model runs (device, batch size, workers, cache, progress,
        runtime, provenance, c2pa_trust); never what it computes."""
        for k, v in settings.items():
            if k not in self.RUNTIME:
                raise TypeError(f"{k!r} is not a runtime setting ({', '.join(self.RUNTIME)})")
            setattr(self, k, v)
        return self

    def __sklearn_clone__(self) -> Attributor:
        """An unfitted copy with the same hyper-parameters and runtime settings."""
        other = type(self)(**self.get_params(deep=False))
        return other.set_runtime(**{k: getattr(self, k) for k in self.RUNTIME})

    # ------------------------------------------------------------------ configuration
    def _check_config(self) -> str:
        """Fail before any work on a bad configuration; return the score name."""
        return check_params(
            head=self.head,
            score=self.score,
            target_tpr=self.target_tpr,
            combine_layers=self.combine_layers,
            seed=self.seed,
            val_fraction=self.val_fraction,
            top_k=self.top_k,
            head_params=self.head_params,
            batch_size=self.batch_size,
        )

    def load_backbone(self) -> Backbone:
        """The backbone (built once, on first use)."""
        if self._backbone_obj is None:
            info = getattr(self, "backbone_info_", None)
            if info is not None and not info.get("name"):
                raise ConfigError(
                    "this model was fitted on features alone (fit_features with an "
                    "array): it cannot read images"
                )
            bb = load_backbone(self.backbone, weights=self.weights, networks=self._networks)
            if info is not None:
                if bb.weights_id != info["weights_id"]:
                    raise BundleError(
                        f"the model was fitted with {info['name']} weights "
                        f"{info['weights_id'][:16]}, but the weights found here are "
                        f"{bb.weights_id[:16]}; pass the original weights (--weights)"
                    )
                if bb.preprocessing != Preprocessing.from_dict(info["preprocessing"]):
                    raise BundleError(
                        "the backbone's preprocessing differs from the one the "
                        "model was fitted with"
                    )
                if bb.cache_key() != info["cache_key"]:
                    raise BundleError(
                        "the backbone's image pipeline differs from the one the "
                        "model was fitted with (another originprobe version?)"
                    )
            self.use_backbone(bb)
        assert self._backbone_obj is not None
        return self._backbone_obj

    @staticmethod
    def _describe_backbone(bb: Backbone | None) -> dict:
        if bb is None:
            return {"name": "", "weights_id": "", "preprocessing": {}, "cache_key": ""}
        return {
            "name": bb.name,
            "weights_id": bb.weights_id,
            "preprocessing": bb.preprocessing.to_dict(),
            "cache_key": bb.cache_key(),
        }

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        data,
        labels: Sequence[str] | None = None,
        *,
        known: Sequence[str] | None = None,
        root: str | None = None,
        class_names: str | None = None,
        allow_outside_root: bool = False,
    ) -> "Attributor":
        """Fit on labelled images: a folder tree, a manifest or annotation file, a `Dataset`, or
        `(images, labels)`. Only the `known` classes are used (default: every label)."""
        self._check_config()
        self.problems_: list[Problem] = []
        if labels is None and isinstance(data, tuple) and len(data) == 2:
            data, labels = data
        if labels is not None:
            items, y = list(data), np.asarray([str(l) for l in labels], dtype=object)
            if len(items) != len(y):
                raise ConfigError(f"{len(items)} images but {len(y)} labels")
            if all(isinstance(it, (str, Path)) for it in items):
                samples = [Sample(path=Path(it), label=l) for it, l in zip(items, y)]
                return self._fit_samples(samples, known)
            keep = np.isin(y, list(known)) if known is not None else np.ones(len(y), bool)
            items, y = [it for it, k in zip(items, keep) if k], y[keep]
            feats, order, errors, _ = extract_arrays(
                items,
                self.load_backbone(),
                base_layers(self._layer_specs()),
                batch_size=self.batch_size,
                workers=self.workers,
                device=self.device,
                progress=self.progress,
                runtime=self.runtime,
            )
            self.problems_ += errors
            return self.fit_features(
                feats, y[np.asarray(order, dtype=np.int64)], problems=self.problems_
            )
        ds = (
            data
            if isinstance(data, Dataset)
            else load_dataset(
                data, class_names=class_names, root=root, allow_outside_root=allow_outside_root
            )
        )
        self.problems_ += ds.problems
        return self._fit_samples(ds.samples, known)

    def _layer_specs(self, available: Sequence[str] | None = None) -> list[LayerSpec]:
        if available is None:
            bb = self.load_backbone()
            return parse_layer_list(self.layers, bb.layer_names, f"backbone {bb.name}")
        return parse_layer_list(self.layers, available, "the features given")

    def _fit_samples(self, samples: Sequence[Sample], known: Sequence[str] | None) -> "Attributor":
        samples, problems = hash_samples(samples)
        self.problems_ += problems
        labels = sorted({s.label for s in samples})
        known = list(known) if known is not None else labels
        if not samples:
            raise ConfigError("no usable images to fit on")
        split = make_split(
            samples,
            known,
            [],
            [],
            seed=self.seed,
            fractions=(1.0 - self.val_fraction, self.val_fraction, 0.0),
        )
        with tempfile.TemporaryDirectory(prefix="originprobe-fit-") as tmp:
            if self._backbone_obj is None and not self.weights and learned_names(self.backbone):
                root = (  # without a cache the network must still outlive this call (save)
                    networks_dir(self.cache)
                    if self.cache
                    else Path(tempfile.mkdtemp(prefix="originprobe-networks-"))
                )
                self._networks, _ = train_members(
                    self.backbone, split.known_classes, split.train, TrainConfig(seed=self.seed),
                    root, device=self.device, progress=self.progress,
                )  # fmt: skip
            bb = self.load_backbone()
            specs = self._layer_specs()
            store = open_store(self.cache or tmp, bb)
            report = extract_features(
                split.train + split.val,
                bb,
                store,
                base_layers(specs),
                batch_size=self.batch_size,
                num_workers=self.workers,
                device=self.device,
                progress=self.progress,
                runtime=self.runtime,
            )
            self.problems_ += report.errors
            train, val = (without_failed(ss, report.errors) for ss in (split.train, split.val))
            # layers are read from the store one at a time, as selection asks for them
            feats = {
                role: StoreRows(store, [str(s.sha256) for s in ss], base_layers(specs))
                for role, ss in (("train", train), ("val", val))
            }
            return self.fit_features(
                feats["train"],
                np.array([s.label for s in train], object),
                feats["val"],
                np.array([s.label for s in val], object),
                counts={"train": _counts(train), "val": _counts(val)},
                problems=self.problems_,
            )

    def fit_features(
        self,
        X,
        y,
        X_val=None,
        y_val=None,
        *,
        counts: dict | None = None,
        problems: Sequence[Problem] = (),
    ) -> Attributor:
        """Fit on features the caller already has: an (n, D) array, or {layer: (n, D)} of the
        backbone's layers (then layers are selected as in `fit`). Arrays may be memory-mapped
        (`np.load(path, mmap_mode="r")`) and float16: selection reads one layer group at a time.
        Without `X_val`, validation is carved from `X` (stratified, seeded). `counts` (images per
        role and class) and `problems` (files skipped on the way) are recorded with the model."""
        score = self._check_config()
        X = self._as_layers(X)
        y = np.asarray([str(v) for v in y], dtype=object)
        if X_val is None:
            tr, va = stratified_indices(y, (1.0 - self.val_fraction, self.val_fraction), self.seed)
            Xtr, Xva = LayerRows(X, tr), LayerRows(X, va)
            y, y_val = y[tr], y[va]
        else:
            Xtr, Xva = LayerRows(X), LayerRows(self._as_layers(X_val))
            y_val = np.asarray([str(v) for v in y_val], dtype=object)
        for l in Xtr:
            if Xtr.rows(l) != len(y) or l not in Xva.arrays or Xva.rows(l) != len(y_val):
                raise ConfigError(f"layer {l}: features and labels differ in length")
        specs = self._layer_specs(list(X))
        params = dict(self.head_params or {})
        grid = {k: [v] for k, v in params.items()} if params else None
        make = head_factory(self.head, self.seed)
        widths = {l: w for l in Xtr if (w := Xtr.width(l)) is not None}
        sel = select_head(
            make,
            lambda role, spec: (Xtr if role == "train" else Xva).concat(spec),
            specs,
            y,
            y_val,
            sorted(set(y.tolist())),
            param_grid=grid,
            combine=int(self.combine_layers),
            progress=self.progress,
            widths=widths,
            map_groups=self._group_mapper(),
        )
        self.selection_ = sel
        self._set_fitted(
            sel.layer, sel.head, score, Xtr.concat(sel.layer), y, Xva.concat(sel.layer), y_val
        )
        self.counts_ = counts or {"train": _counts_labels(y), "val": _counts_labels(y_val)}
        self.problems_ = list(problems)
        self.selection_summary_ = {
            "layer": str(sel.layer),
            "params": sel.params,
            "criterion": "validation balanced accuracy",
            "engine": self.engine,
            "val_balanced_accuracy": sel.val_balanced_accuracy,
            "fits": sel.fits,
            "seconds": round(sel.seconds, 3),
        }
        if sel.proxy:
            self.selection_summary_["screened"] = {
                "proxy": "shrinkage LDA, validation balanced accuracy",
                "scores": {str(k): round(v, 4) for k, v in sel.proxy.items()},
            }
        return self

    def _group_mapper(self):
        """Where selection fits its layer groups: here, or as Ray tasks (`engine="ray"`), each
        reading its layers from the feature store (which must be on a shared filesystem)."""
        if self.engine == "local":
            return None
        if self.engine != "ray":
            raise ConfigError(f"engine must be local or ray, got {self.engine!r}")
        from ..features.ray_engine import ray_map

        return lambda fn, tasks: ray_map(fn, tasks, self.address)

    def _as_layers(self, X) -> Mapping[str, Any]:
        """{layer: (n, D) array-like}, kept as given (memory-mapped, float16) until read."""
        if isinstance(X, StoreRows):
            return X
        if isinstance(X, Mapping):
            out = {}
            for k, v in X.items():
                if not hasattr(v, "shape") or len(v.shape) != 2:
                    v = np.asarray(v, dtype=np.float32)
                    if v.ndim != 2:
                        raise ConfigError(f"layer {k}: features must be (n, D), got {v.shape}")
                out[str(k)] = v
            return out
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2:
            raise ConfigError(f"features must be (n, D) or {{layer: (n, D)}}, got shape {X.shape}")
        name = (
            str(self.layers)
            if isinstance(self.layers, str)
            and self.layers != "all"
            and "," not in self.layers
            and "+" not in self.layers
            else FEATURES
        )
        return {name: X}

    def _set_fitted(
        self,
        layer: LayerSpec,
        head: Head,
        score: str,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
    ) -> None:
        self.layer_ = layer
        self.head_ = head
        self.classes_ = [str(c) for c in head.classes_]
        ref = per_class_subset(
            y_train, int(self.reference_per_class), np.random.default_rng(self.seed)
        )
        cal = per_class_subset(
            y_val, int(self.reference_per_class), np.random.default_rng(self.seed)
        )
        self.reference_ = (np.ascontiguousarray(X_train[ref], np.float32), y_train[ref])
        self.calibration_ = (np.ascontiguousarray(X_val[cal], np.float32), y_val[cal])
        self.score_name_ = score
        self.score_: OpenSetScore = fit_score(score, *self.reference_, head)
        self.threshold_ = calibrate_threshold(self.score_.score(X_val), float(self.target_tpr))

    def with_head(
        self,
        layer: LayerSpec,
        head: Head,
        X_train: np.ndarray,
        y_train: np.ndarray,
        X_val: np.ndarray,
        y_val: np.ndarray,
    ) -> "Attributor":
        """A copy of this model that uses another (layer, fitted head), its score refitted and
        its threshold recalibrated on the given known-class features (layer sweeps)."""
        other = copy.copy(self)
        other._set_fitted(layer, head, self.score_name_, X_train, y_train, X_val, y_val)
        return other

    def with_threshold(self, threshold: float) -> "Attributor":
        """A copy of this model that rejects below `threshold` instead of the calibrated one."""
        self._check_fitted()
        other = copy.copy(self)
        other.threshold_ = float(threshold)
        return other

    def with_score(self, score: str) -> "Attributor":
        """A copy of this model with another open-set score, fitted on the stored training
        features, its threshold recalibrated on the stored validation features."""
        self._check_fitted()
        check_supported(self.head_, score)
        other = copy.copy(self)
        other.score = score
        other._set_fitted(self.layer_, self.head_, score, *self.reference_, *self.calibration_)
        return other

    def use_backbone(self, backbone: Backbone) -> "Attributor":
        """Use an already built backbone (it must be the one this model names)."""
        if backbone.name != self.backbone:
            raise ConfigError(f"backbone {backbone.name!r} is not this model's {self.backbone!r}")
        self._backbone_obj = backbone
        self._networks = learned_members(backbone)
        if getattr(self, "backbone_info_", None) is None:
            self.backbone_info_ = self._describe_backbone(backbone)
        return self

    # ------------------------------------------------------------------ deciding
    def _check_fitted(self) -> None:
        if not hasattr(self, "head_"):
            raise RuntimeError("this Attributor is not fitted: call fit(...) or Attributor.load")

    def decide(self, X: np.ndarray) -> Decisions:
        """Decisions for features of the model's layer: closest class, label, score, posterior."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float32)
        decision = self.head_.decision_function(X)
        proba = self.head_.proba_from_decision(decision)
        score = np.asarray(self.score_.score(X, decision), dtype=np.float64)
        closest = self.head_.classes_[np.argmax(decision, axis=1)]
        label = closest.copy()
        label[score < self.threshold_] = UNKNOWN
        return Decisions(self.classes_, closest, label, score, proba, float(self.threshold_))

    def features(
        self, images: Iterable[Any], image_transform=None
    ) -> tuple[np.ndarray, list[int], list[Problem], list[Problem]]:
        """Features of the model's layer for images: (rows, input positions, errors, warnings)."""
        self._check_fitted()
        if FEATURES in self.layer_.parts:
            raise ConfigError(
                "this model was fitted on features alone (fit_features with an "
                "array): it cannot read images; pass it features"
            )
        bb = self.load_backbone()
        feats, order, errors, warns = extract_arrays(
            images,
            bb,
            list(self.layer_.parts),
            batch_size=self.batch_size,
            workers=self.workers,
            device=self.device,
            progress=self.progress,
            image_transform=image_transform,
            runtime=self.runtime,
        )
        return _concat(feats, self.layer_), order, errors, warns

    def evidence_reader(self) -> EvidenceReader | None:
        """The provenance reader (built once), or None when `provenance` is off."""
        if not self.provenance:
            return None
        if self._evidence_reader is None or self._evidence_reader.trust_anchors != self.c2pa_trust:
            self._evidence_reader = EvidenceReader(self.c2pa_trust)
        return self._evidence_reader

    def predict(self, images: Iterable[Any], top_k: int | None = None) -> list[Attribution]:
        """One `Attribution` per input (paths, bytes, PIL images, numpy arrays, mixed), in order;
        an input that cannot be read gets its `error` instead of a label. Files and bytes also
        get `evidence`: what their metadata claims, read while the backbone runs."""
        inputs = [ImageInput.of(it, i) for i, it in enumerate(images)]
        reader = self.evidence_reader()
        pending = None
        if reader is not None:
            files = [
                (i, inp.source)
                for i, inp in enumerate(inputs)
                if isinstance(inp.source, (Path, bytes))
            ]
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="provenance")
            pending = pool.submit(lambda: {i: reader.read(src) for i, src in files})
            pool.shutdown(wait=False)
        X, order, errors, warns = self.features(inputs)
        k = int(top_k or self.top_k)
        out = [Attribution(source=inp.name, label=None) for inp in inputs]
        by_name_err: dict[str, str] = {}
        for p in errors:
            by_name_err.setdefault(p.path, p.reason)
        for i, inp in enumerate(inputs):
            if i not in set(order):
                out[i].error = by_name_err.get(inp.name, "could not be read")
        if len(order):
            d = self.decide(X)
            warn_by = {p.path: p.reason for p in warns}
            for row, i in enumerate(order):
                top = np.argsort(-d.proba[row], kind="stable")[:k]
                out[i] = Attribution(
                    source=inputs[i].name,
                    label=str(d.label[row]),
                    closest=str(d.closest[row]),
                    score=float(d.score[row]),
                    threshold=d.threshold,
                    probabilities=[(self.classes_[j], float(d.proba[row, j])) for j in top],
                    warning=warn_by.get(inputs[i].name),
                )
        if pending is not None:
            for i, ev in pending.result().items():
                out[i].evidence = compare(ev, out[i].label, self.classes_) if out[i].ok else ev
        return out

    def decision_scores(self, images_or_features) -> np.ndarray:
        """Open-set scores (higher = more likely known) of images, or of feature rows."""
        self._check_fitted()
        if (
            isinstance(images_or_features, np.ndarray)
            and images_or_features.ndim == 2
            and images_or_features.dtype != np.uint8
            and images_or_features.shape[1] == self.head_.n_features_
        ):
            return self.decide(images_or_features).score
        X, order, errors, _ = self.features(images_or_features)
        out = np.full(len(order) + len(errors), np.nan)
        if len(order):
            out[np.asarray(order)] = self.decide(X).score
        return out

    # ------------------------------------------------------------------ enrolment
    def enroll(self, label: str, images: Iterable[Any]) -> tuple[int, list[Problem]]:
        """Add a new class from a few images, using only what the model holds: the head is
        updated (or refitted on the stored training features), the score refitted, and the
        threshold recalibrated on the stored validation features of the earlier classes."""
        self._check_fitted()
        if not label or label == UNKNOWN or label.strip() != label:
            raise ConfigError(f"invalid class name {label!r}")
        if label in self.classes_:
            raise ConfigError(f"class {label!r} is already known")
        X, order, errors, _ = self.features(images)
        if not len(order):
            raise ConfigError(f"no readable images to enrol as {label!r}")
        X_ref, y_ref = self.reference_
        head = self.head_.add_class(X, label, X_ref, y_ref)
        y_new = np.array([label] * len(X), dtype=object)
        X_tr, y_tr = np.vstack([X_ref, X]), np.concatenate([y_ref, y_new])
        X_val, y_val = self.calibration_
        self._set_fitted(self.layer_, head, self.score_name_, X_tr, y_tr, X_val, y_val)
        self.enrolled_ = list(getattr(self, "enrolled_", [])) + [
            {"label": label, "images": int(len(X))}
        ]
        return len(X), errors

    # ------------------------------------------------------------------ saving
    def save(self, model_dir: str | Path) -> Path:
        self._check_fitted()
        tensors, head_params = self.head_.get_state()
        X_ref, y_ref = self.reference_
        X_val, y_val = self.calibration_
        idx = {c: i for i, c in enumerate(self.classes_)}
        meta = {
            "originprobe_version": __version__,
            "backbone": self._backbone_for_bundle(),
            "layer": str(self.layer_),
            "feature_dim": int(self.head_.n_features_),
            "head": {"name": self.head_.name, **head_params},
            "score": {"name": self.score_name_},
            "threshold": float(self.threshold_),
            "target_tpr": float(self.target_tpr),
            "classes": list(self.classes_),
            "config": {
                "combine_layers": int(self.combine_layers),
                "seed": int(self.seed),
                "val_fraction": float(self.val_fraction),
                "reference_per_class": int(self.reference_per_class),
                "top_k": int(self.top_k),
            },
            "selection": getattr(self, "selection_summary_", {}),
            "counts": getattr(self, "counts_", {}),
            "enrolled": getattr(self, "enrolled_", []),
            "networks": {name: network_file(name) for name in self._networks},
        }
        reference: dict[str, np.ndarray] = {
            "train_features": X_ref,
            "train_labels": np.array([idx[v] for v in y_ref], dtype=np.int64),
            "val_features": X_val,
            "val_labels": np.array([idx[v] for v in y_val], dtype=np.int64),
        }
        files = {network_file(n): p for n, p in self._networks.items()}
        return write_bundle(model_dir, meta, tensors, reference, files)

    def _backbone_for_bundle(self) -> dict:
        info = getattr(self, "backbone_info_", None)
        if info is None:
            if FEATURES in self.layer_.parts:
                return self._describe_backbone(None)
            self.load_backbone()
            info = self.backbone_info_
        return dict(info)

    @classmethod
    def load(cls, model_dir: str | Path, weights: str | None = None, **runtime) -> "Attributor":
        """A saved model; the whole bundle is validated first. `runtime` sets device,
        batch_size, workers, progress, top_k."""
        parts = read_model(model_dir)
        meta, head, score, layer, classes = (parts.meta, parts.head, parts.score, parts.layer,
                                             parts.classes)  # fmt: skip
        where = Path(model_dir) / "model.json"
        cfg = meta.get("config") or {}
        att = cls(
            backbone=meta["backbone"]["name"] or FEATURES,
            layers=str(layer),
            head=head.name,
            score=score,
            target_tpr=float(meta["target_tpr"]),
            weights=weights,
            **{
                k: type(v)(cfg.get(k, v))
                for k, v in DEFAULTS.items()
                if k in ("combine_layers", "seed", "val_fraction", "reference_per_class", "top_k")
            },
        )
        top_k = runtime.pop("top_k", None)
        if top_k is not None:
            att.top_k = int(top_k)
        att.set_runtime(**runtime)
        att.backbone_info_ = dict(meta["backbone"])
        att._networks = parts.networks
        att.layer_, att.head_, att.classes_ = layer, head, classes
        att.score_name_ = score
        att.reference_, att.calibration_ = parts.reference, parts.calibration
        try:
            att.score_ = fit_score(score, *att.reference_, head)
        except ValueError as exc:
            raise BundleError(f"{where}: score {score!r} cannot be rebuilt ({exc})") from None
        att.threshold_ = float(meta["threshold"])
        att.selection_summary_ = meta.get("selection", {})
        att.counts_ = meta.get("counts", {})
        att.enrolled_ = meta.get("enrolled", [])
        att.bundle_meta_ = meta
        return att

    def describe(self) -> dict:
        """What the model is (for `GET /v1/model` and reports)."""
        self._check_fitted()
        return {
            "classes": list(self.classes_),
            "backbone": dict(getattr(self, "backbone_info_", {}) or {}),
            "layer": str(self.layer_),
            "head": {"name": self.head_.name, "params": self.head_.get_params()},
            "score": self.score_name_,
            "threshold": float(self.threshold_),
            "target_tpr": float(self.target_tpr),
            "enrolled": getattr(self, "enrolled_", []),
            "originprobe_version": __version__,
        }


def _concat(feats: Mapping[str, np.ndarray], spec: LayerSpec) -> np.ndarray:
    try:
        mats = [feats[p] for p in spec.parts]
    except KeyError as exc:
        raise ConfigError(f"no features for layer {exc.args[0]!r}") from None
    return mats[0] if len(mats) == 1 else np.hstack(mats)


def _counts(samples: Sequence[Sample]) -> dict[str, int]:
    return _counts_labels([s.label for s in samples])


def _counts_labels(labels) -> dict[str, int]:
    out: dict[str, int] = {}
    for l in labels:
        out[str(l)] = out.get(str(l), 0) + 1
    return dict(sorted(out.items()))
