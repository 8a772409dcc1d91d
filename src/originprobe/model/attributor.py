"""`Attributor`: images → a known generator, "real", or unknown; the composition of a
`FeatureExtractor` (backbone, layers, networks, cache, runtime) and an `OpenSetClassifier`
(head, score, threshold), with the layer set between them chosen by cross-validation.

    from originprobe import Attributor
    att = Attributor(runtime={"cache": ".cache/features"})
    att.fit("../shared/data/realgen", known=["real", "dalle-mini", "latent-diffusion"])
    for a in att.predict(["a.png", "b.jpg"]):
        print(a.source, a.label, a.score, a.probabilities)
    att.save("model/"); att = Attributor.load("model/")
    att.enroll("midjourney-v3", ["mj1.png", "mj2.png"])

Fitting uses every known-class training image: cross-validation chooses the layer set, fusion
members, head parameters and score (`model.selection`, `model.crossval`), out-of-fold scores set
the threshold, and the head is refitted on all of them. Unknown classes never reach `fit`. The
command line and the service share this path (`model.preparation`). `discover` groups rejected
images into candidate new generators (`model.discovery`).
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from ..backbones import DEFAULT_BACKBONE, Backbone
from ..data import Dataset, Problem, Sample, hash_samples, load_dataset, make_split
from ..data.perturb import Perturbation
from ..errors import ConfigError
from ..features import ImageInput, LayerRows, base_layers, parse_layer_list
from ..features.layers import StackedRows, layer_width
from ..heads.selection import check_roles
from ..openset import UNKNOWN
from ..provenance import EvidenceReader
from ..runtime import Runtime
from ..training import TrainConfig
from .bundle import save_bundle
from .card import training_data
from .crossval import CrossValidation, SelectionConfig
from .estimator import DEFAULT_TARGET_TPR, Decisions, OpenSetClassifier, check_params
from .evidence import Attribution, with_evidence
from .extractor import FEATURES, FeatureExtractor, as_layers
from .preparation import Prepared, prepare_split
from .saved import description, restore
from .selection import LayerSearch

SETTINGS = ("provenance", "c2pa_trust")  # prediction settings beside the runtime


class Attributor(BaseEstimator):
    """Open-set origin attribution of images (see the module doc).

    Parameters
    ----------
    backbone : str
        Backbone spec (`originprobe backbones`); a fusion ``A+B`` has its members chosen too.
    layers : str or sequence of str
        ``all`` (chosen by `selection.layer_search`), or layer specs to compare as given.
    head : str
        ``linear``, ``knn``, ``gaussian``, ``ncm`` or ``reference``.
    score : str
        An open-set score the head supports, or ``auto`` (chosen by leave-one-generator-out).
    target_tpr : float
        Share of known images the reject threshold keeps (out-of-fold scores).
    head_params : mapping or None
        Head parameters to fix instead of cross-validating them.
    weights : str or None
        Backbone weights (file or folder), or a ``learned:ARCH`` network file.
    seed : int
        Seeds folds, subsamples, heads and trained networks.
    selection : SelectionConfig or mapping or None
        Folds, layer search, real classes (`model.crossval.SelectionConfig`).
    training : TrainConfig or mapping or None
        How ``learned:ARCH`` members are trained.
    pretrain : str or None
        A folder tree of real photos learned networks first learn to tell apart.
    perturbation : str or None
        Applied to every image the model reads, at fit and predict (``jpeg=90``).
    runtime : Runtime or mapping or None
        Device, batch size, workers, engine, feature cache, progress: where and how, never what.
    top_k : int
        Classes listed per prediction.
    """

    bundle_meta_: dict[str, Any]  # set by `load`: the bundle's model.json
    training_data_: dict[str, Any] | None  # what the model card says of the training images

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        layers: str | Sequence[str] = "all",
        head: str = "linear",
        score: str = "auto",
        target_tpr: float = DEFAULT_TARGET_TPR,
        head_params: Mapping[str, Any] | None = None,
        weights: str | None = None,
        seed: int = 0,
        selection: SelectionConfig | Mapping[str, Any] | None = None,
        training: TrainConfig | Mapping[str, Any] | None = None,
        pretrain: str | None = None,
        perturbation: str | None = None,
        runtime: Runtime | Mapping[str, Any] | None = None,
        top_k: int = 3,
    ):
        self.backbone = backbone
        self.layers = layers
        self.head = head
        self.score = score
        self.target_tpr = target_tpr
        self.head_params = head_params
        self.weights = weights
        self.seed = seed
        self.selection = selection
        self.training = training
        self.pretrain = pretrain
        self.perturbation = perturbation
        self.runtime = runtime
        self.top_k = top_k
        self.provenance, self.c2pa_trust = True, None
        self._extractor: FeatureExtractor | None = None
        self._reader: EvidenceReader | None = None

    # ------------------------------------------------------------------ parts
    def set_runtime(self, **settings: Any) -> "Attributor":
        """Change where and how the model runs (`Runtime` fields: device, batch_size, workers,
        backend, engine, address, cache, progress), how it answers (top_k) and whether it reads
        provenance (provenance, c2pa_trust); never what it computes."""
        rt = {k: v for k, v in settings.items() if k not in (*SETTINGS, "top_k")}
        self.runtime = Runtime.of(self.runtime, **rt)
        for k in SETTINGS:
            if k in settings:
                setattr(self, k, settings[k])
        self.top_k = int(settings.get("top_k") or self.top_k)
        if self._extractor is not None:
            self._extractor.runtime = self.runtime
        return self

    def resolved_params(self) -> dict[str, Any]:
        """The hyper-parameters with the nested settings as their values (None → defaults),
        so one model reads the same whether its options came as values or mappings."""
        layers = self.layers if isinstance(self.layers, str) else ",".join(map(str, self.layers))
        return self.get_params(deep=False) | {
            "layers": layers,
            "selection": SelectionConfig.of(self.selection),
            "training": TrainConfig.of(self.training),
        }

    def _check_config(self) -> None:
        check_params(self.head, self.score, self.target_tpr, self.head_params, self.seed)
        SelectionConfig.of(self.selection), TrainConfig.of(self.training), Runtime.of(self.runtime)
        if self.perturbation is not None:
            Perturbation.parse(self.perturbation)
        if int(self.top_k) < 1:
            raise ConfigError(f"top_k must be ≥ 1, got {self.top_k}")

    def extractor(self) -> FeatureExtractor:
        """The feature half of the model (built from these parameters on first use)."""
        if self._extractor is None:
            self._extractor = FeatureExtractor(self.backbone, self.layers, self.weights,
                                               self.training, self.pretrain, self.perturbation,
                                               self.runtime)  # fmt: skip
        return self._extractor

    def classifier(self) -> OpenSetClassifier:
        """An unfitted open-set classifier with these parameters."""
        return OpenSetClassifier(self.head, self.score, self.target_tpr, self.head_params,
                                 self.selection, self.seed)  # fmt: skip

    def use_extractor(self, extractor: FeatureExtractor) -> "Attributor":
        """Read features through an already fitted extractor (what `prepare_split` made)."""
        self._extractor = extractor
        return self

    def use_backbone(self, backbone: Backbone) -> "Attributor":
        """Use an already built backbone (it must be the one this model names)."""
        self.extractor().use_backbone(backbone)
        return self

    def load_backbone(self) -> Backbone:
        fx = self.extractor()
        if not hasattr(fx, "backbone_"):
            if self.backbone == FEATURES:
                raise ConfigError(
                    "this model was fitted on features alone (fit_features with an array): it "
                    "cannot read images"
                )
            fx.load(getattr(self, "_networks", {}), getattr(self, "backbone_info_", None))
        return fx.backbone_

    # ------------------------------------------------------------------ fitting
    def fit(self, data, labels=None, *, known=None, root=None, class_names=None,
            allow_outside_root: bool = False) -> "Attributor":  # fmt: skip
        """Fit on labelled images: a folder tree, a manifest or annotation file, a `Dataset`, or
        `(images, labels)`. Only the `known` classes are used (default: every label)."""
        self._check_config()
        if labels is None and isinstance(data, tuple) and len(data) == 2:
            data, labels = data
        if labels is not None:
            items, y = list(data), np.asarray([str(l) for l in labels], dtype=object)
            if len(items) != len(y):
                raise ConfigError(f"{len(items)} images but {len(y)} labels")
            if not all(isinstance(it, (str, Path)) for it in items):
                return self._fit_in_memory(items, y, known)
            samples = [Sample(path=Path(it), label=l) for it, l in zip(items, y)]
            problems: list[Problem] = []
        else:
            ds = data if isinstance(data, Dataset) else load_dataset(
                data, class_names=class_names, root=root, allow_outside_root=allow_outside_root
            )  # fmt: skip
            samples, problems = ds.samples, list(ds.problems)
        samples, more = hash_samples(samples)
        if not samples:
            raise ConfigError("no usable images to fit on")
        known = list(known) if known is not None else sorted({s.label for s in samples})
        split = make_split(samples, known, [], [], seed=self.seed, fractions=(1.0, 0.0, 0.0))
        return self.fit_prepared(prepare_split(split, self.extractor(), self.seed,
                                               problems + more))  # fmt: skip

    def _fit_in_memory(self, items: list, y: np.ndarray, known) -> "Attributor":
        keep = np.isin(y, list(known)) if known is not None else np.ones(len(y), bool)
        fx = self.extractor()
        if not hasattr(fx, "backbone_"):
            fx.fit([], sorted(set(y[keep].tolist())), self.seed)
        items = [it for it, k in zip(items, keep) if k]
        feats, order, errors, _ = fx.transform(items, base_layers(fx.layer_specs_))
        return self.fit_features(feats, y[keep][np.asarray(order, dtype=np.int64)],
                                 problems=errors)  # fmt: skip

    def fit_prepared(self, p: Prepared) -> "Attributor":
        """The last step of every fit: the model on a prepared split's training features."""
        self._extractor = p.extractor
        check_roles(p.table.labels("dev"), p.split.known_classes)
        dev = p.split.counts()
        counts = {"train": {c: dev.get("train", {}).get(c, 0) + dev.get("val", {}).get(c, 0)
                            for c in p.split.known_classes}}  # fmt: skip
        self.training_ = p.training
        self.fit_features(p.table.rows["dev"], p.table.labels("dev"), counts=counts,
                          problems=p.problems)  # fmt: skip
        self.training_data_ = training_data(p.table.samples["dev"])
        return self

    def fit_features(self, X, y, X_val=None, y_val=None, *, counts=None, problems=()):
        """Fit on features the caller already has: an (n, D) array, or {layer: (n, D)} of the
        backbone's layers (then the layer set is chosen as in `fit`). Arrays may be
        memory-mapped and float16: layers are read one candidate at a time. `X_val, y_val`, when
        given, join the training rows (every row is used; cross-validation chooses)."""
        self._check_config()
        X = as_layers(X, self.layers)
        y = np.asarray([str(v) for v in y], dtype=object)
        if X_val is not None:  # read as one row set, a layer at a time
            X = StackedRows([X, as_layers(X_val, self.layers)])
            y = np.concatenate([y, np.asarray([str(v) for v in y_val], dtype=object)])
        rows = LayerRows(X)
        for l in X:
            if rows.rows(l) != len(y):
                raise ConfigError(f"layer {l}: features and labels differ in length")
        fx = self._extractor
        known_layers = list(X)
        specs = parse_layer_list(self.layers, known_layers, "the features given") if fx is None \
            or not hasattr(fx, "layer_specs_") else fx.layer_specs_  # fmt: skip
        cfg = SelectionConfig.of(self.selection)
        clf = self.classifier()
        rt = Runtime.of(self.runtime)
        engine = rt.engine_entry()
        mapper = None if engine.in_process else (lambda f, t: engine.map(f, t, rt))
        search = LayerSearch(clf, X, y, cfg, rt.progress, mapper)
        widths = {l: w for l in known_layers if (w := layer_width(X, l)) is not None}
        choice = search.run(specs, widths)
        cv = search.cv if search.index is None else CrossValidation(y, cfg, self.seed,
                                                                   self.target_tpr)  # fmt: skip
        clf.fit_cross_validated(rows.concat(choice.layer), y, cv, choice.chosen)
        self.layer_, self.classifier_ = choice.layer, clf
        self.counts_ = counts or {"train": dict(sorted(Counter(y.tolist()).items()))}
        self.training_data_ = None  # only images can say where they came from (fit_prepared)
        self.problems_ = list(problems)
        self.selection_ = choice
        self.selection_summary_ = choice.summary(clf, cfg, rt.engine)
        return self

    # ------------------------------------------------------------------ fitted state
    def _check_fitted(self) -> None:
        if not hasattr(self, "classifier_"):
            raise RuntimeError("this Attributor is not fitted: call fit(...) or Attributor.load")

    @property
    def classes_(self) -> list[str]:
        self._check_fitted()
        return [str(c) for c in self.classifier_.classes_]

    head_ = property(lambda self: self.classifier_.head_)
    score_name_ = property(lambda self: self.classifier_.score_name_)
    threshold_ = property(lambda self: self.classifier_.threshold_)
    reference_ = property(lambda self: self.classifier_.reference_)

    def decide(self, X: np.ndarray) -> Decisions:
        """Decisions for features of the model's layer: closest class, label, score, posterior."""
        self._check_fitted()
        return self.classifier_.decide(X)

    def with_threshold(self, threshold: float) -> "Attributor":
        """A copy of this model that rejects below `threshold` instead of the calibrated one."""
        self._check_fitted()
        other = copy.copy(self)
        other.classifier_ = self.classifier_.with_threshold(threshold)
        return other

    # ------------------------------------------------------------------ predicting
    def features(self, images: Iterable[Any]) -> tuple[np.ndarray, list[int], list, list]:
        """Features of the model's layer for images: (rows, input positions, errors, warnings)."""
        self._check_fitted()
        if FEATURES in self.layer_.parts:
            raise ConfigError(
                "this model was fitted on features alone (fit_features with an array): it "
                "cannot read images; pass it features"
            )
        self.load_backbone()
        feats, order, errors, warns = self.extractor().transform(images, list(self.layer_.parts))
        X = np.hstack([feats[p] for p in self.layer_.parts]) if feats else np.zeros((0, 0))
        return X, order, errors, warns

    def evidence_reader(self) -> EvidenceReader | None:
        """The provenance reader (built once), or None when `provenance` is off."""
        if not self.provenance:
            return None
        if self._reader is None or self._reader.trust_anchors != self.c2pa_trust:
            self._reader = EvidenceReader(self.c2pa_trust)
        return self._reader

    def predict(self, images: Iterable[Any], top_k: int | None = None) -> list[Attribution]:
        """One `Attribution` per input (paths, bytes, PIL images, numpy arrays, mixed), in order;
        an input that cannot be read gets its `error` instead of a label. Files and bytes also
        get `evidence`: what their metadata claims, read while the backbone runs."""
        inputs = [ImageInput.of(it, i) for i, it in enumerate(images)]
        k = int(top_k or self.top_k)
        return with_evidence(lambda inp: self.predict_pixels(inp, k), inputs,
                             self.evidence_reader(), self.classes_)  # fmt: skip

    def predict_pixels(self, inputs: Sequence[ImageInput], top_k: int, keep=None) -> list:
        """The verdicts from the pixels alone, one per input (`keep`: gets rows X and order)."""
        X, order, errors, warns = self.features(inputs)
        if keep is not None:
            keep.update(X=X, order=order)
        out = [Attribution(source=inp.name, label=None) for inp in inputs]
        reasons: dict[str, str] = {}
        for p in errors:
            reasons.setdefault(p.path, p.reason)
        placed = set(order)
        for i, inp in enumerate(inputs):
            if i not in placed:
                out[i].error = reasons.get(inp.name, "could not be read")
        if len(order):
            d = self.decide(X)
            warn_by = {p.path: p.reason for p in warns}
            for row, i in enumerate(order):
                top = np.argsort(-d.proba[row], kind="stable")[:top_k]
                out[i] = Attribution(
                    source=inputs[i].name, label=str(d.label[row]), closest=str(d.closest[row]),
                    score=float(d.score[row]), threshold=d.threshold,
                    probabilities=[(d.classes[j], float(d.proba[row, j])) for j in top],
                    warning=warn_by.get(inputs[i].name),
                )  # fmt: skip
        return out

    def decision_scores(self, images_or_features) -> np.ndarray:
        """Open-set scores (higher = more likely known) of images, or of feature rows."""
        self._check_fitted()
        x = images_or_features
        if isinstance(x, np.ndarray) and x.ndim == 2 and x.dtype != np.uint8 \
                and x.shape[1] == self.head_.n_features_:  # fmt: skip
            return self.decide(x).score
        X, order, errors, _ = self.features(x)
        out = np.full(len(order) + len(errors), np.nan)
        if len(order):
            out[np.asarray(order)] = self.decide(X).score
        return out

    def discover(self, images: Iterable[Any], min_cluster_size: int = 8, seed: int = 0) -> list:
        """Clusters of the images rejected as unknown (`model.discovery.discover_images`)."""
        from .discovery import discover_images

        return discover_images(self, images, min_cluster_size, seed).clusters

    # ------------------------------------------------------------------ enrolment
    def enroll(self, label: str, images: Iterable[Any]) -> tuple[int, list[Problem]]:
        """Add a new class from a few images, using only what the model holds: the head is
        updated in place or refitted on the stored training features, the score refitted, and
        the threshold set again at `target_tpr` of out-of-fold scores of the earlier classes'
        stored rows (folds over the stored rows and the new ones)."""
        self._check_fitted()
        if not label or label == UNKNOWN or label.strip() != label:
            raise ConfigError(f"invalid class name {label!r}")
        if label in self.classes_:
            raise ConfigError(f"class {label!r} is already known")
        X, order, errors, _ = self.features(images)
        if not len(order):
            raise ConfigError(f"no readable images to enrol as {label!r}")
        self.classifier_ = self.classifier_.enrolled(label, X)
        self.enrolled_ = list(getattr(self, "enrolled_", [])) + [
            {"label": label, "images": int(len(X))}
        ]
        return len(X), errors

    # ------------------------------------------------------------------ saving
    def save(self, model_dir: str | Path) -> Path:
        """Write the model as a bundle (`model.bundle`): atomically, checksummed."""
        self._check_fitted()
        networks = dict(getattr(self._extractor, "networks_", {}) or {})
        return save_bundle(model_dir, self, self._backbone_info(), networks)

    def _backbone_info(self) -> dict:
        if FEATURES in self.layer_.parts:
            return {"name": "", "weights_id": "", "preprocessing": {}, "cache_key": ""}
        if getattr(self, "backbone_info_", None) is not None:
            return dict(self.backbone_info_)
        self.load_backbone()
        return self.extractor().describe()

    @classmethod
    def load(cls, model_dir: str | Path, weights: str | None = None, **settings) -> "Attributor":
        """A saved model (a folder, or ``hf://ORG/NAME[@REVISION]`` from the Hugging Face Hub,
        `model.hub`); the whole bundle is validated first. `settings`: `set_runtime`'s."""
        return restore(cls, model_dir, weights, settings)

    def describe(self) -> dict:
        """What the model is (for `GET /v1/model` and reports)."""
        return description(self)
