"""Model bundles: a fitted `Attributor` saved as a directory of JSON + safetensors.

    MODEL_DIR/model.json             what to load (`SCHEMA`): the model's hyper-parameters,
                                     backbone (name, weights hash, preprocessing), layer, head
                                     (name, parameters, classes), score, threshold, the selection
                                     and its known-only estimate, sha256 of every tensor file, a
                                     checksum over all of it and, optionally, a signature
    MODEL_DIR/head.safetensors       the head's learned arrays
    MODEL_DIR/reference.safetensors  known-class training features the bundle carries so that it
                                     works on any machine (scores such as kNN and ViM are refitted
                                     from them at load; enrolment refits and recalibrates from
                                     them)
    MODEL_DIR/README.md              the model card (`model.card`), generated from model.json
    MODEL_DIR/networks/*.safetensors the networks of `learned:ARCH` backbone members, when the
                                     model uses any (its weights, checked by hash like the rest)

`SCHEMA` is the one description of model.json: `Attributor.save` writes exactly its entries, and
`read_model` checks them (types, then meaning) before anything is used: class lists, array shapes
against the class count and feature dimension, a finite threshold, known head and score names.
Loading never executes code (no pickle). A bundle that fails any check is refused with
`BundleError` naming the file and the reason.

Integrity: the checksum (sha256) detects accidental damage and edits by tools that do not
recompute it; it is not a protection against someone who edits a bundle on purpose, since anyone
can recompute it. For that, set `ORIGINPROBE_BUNDLE_KEY`: bundles saved with it carry an
HMAC-SHA256 signature, and while it is set `load` refuses bundles that are unsigned or whose
signature does not match.
Saving is atomic: the bundle is built beside the target and swapped in by rename.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, OriginprobeError
from ..features.layers import LayerSpec
from ..fileio import atomic_directory, canonical_json, sha256_file
from ..heads import HEADS, Head, HeadStateError
from ..openset import check_supported
from ..openset.threshold import check_target_tpr
from .card import CARD_FILE, render_card

FORMAT = "originprobe-model"
FORMAT_VERSION = 4
READABLE_VERSIONS = (3, 4)  # 3: before the model card

#: every entry of model.json that a model writes, and its JSON type
SCHEMA: dict[str, type | tuple[type, ...]] = {
    "originprobe_version": str,
    "params": dict,  # the Attributor's hyper-parameters (get_params, as JSON)
    "backbone": dict,  # name, weights_id, preprocessing, cache_key
    "layer": str,
    "feature_dim": int,
    "head": dict,  # name, params, classes
    "score": dict,  # name
    "threshold": (int, float),
    "classes": list,
    "selection": dict,  # what was chosen, how, and its known-only estimate
    "counts": dict,
    "enrolled": list,
    "networks": dict,  # learned:ARCH member → its file in the bundle
    "card": dict,  # what the model card says beyond the above: training data, test figures
}
MODEL_JSON = "model.json"
HEAD_FILE = "head.safetensors"
REFERENCE_FILE = "reference.safetensors"
KEY_ENV = "ORIGINPROBE_BUNDLE_KEY"


class BundleError(OriginprobeError):
    """A model directory that cannot be loaded safely; the message says which file and why."""


def _checksum(meta: dict) -> str:
    return hashlib.sha256(
        canonical_json({k: v for k, v in meta.items() if k not in ("checksum", "signature")})
    ).hexdigest()


def _signature(key: str, checksum: str) -> str:
    return hmac.new(key.encode("utf-8"), checksum.encode("ascii"), hashlib.sha256).hexdigest()


def write_bundle(
    out_dir: str | Path,
    meta: dict,
    head_tensors: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    extra_files: "Mapping[str, str | Path] | None" = None,
    texts: "Mapping[str, str] | None" = None,
) -> Path:
    """Write a bundle atomically; `meta` is completed with file digests, checksum, signature.
    `extra_files` ({relative path in the bundle: source file}) are copied in and `texts`
    ({relative path: content}) written, and hashed too."""
    import shutil

    from safetensors.numpy import save_file

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BundleError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MODEL_JSON).exists():
        raise BundleError(
            f"{out}: directory is not empty and is not an originprobe model; "
            "refusing to overwrite it"
        )
    with atomic_directory(out) as tmp:
        save_file(
            {k: np.ascontiguousarray(v) for k, v in head_tensors.items()}, str(tmp / HEAD_FILE)
        )
        save_file(
            {k: np.ascontiguousarray(v) for k, v in reference.items()}, str(tmp / REFERENCE_FILE)
        )
        for rel, src in (extra_files or {}).items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / rel)
        for rel, text in (texts or {}).items():
            (tmp / rel).write_text(text, encoding="utf-8")
        meta = dict(
            meta,
            format=FORMAT,
            format_version=FORMAT_VERSION,
            files={
                rel: sha256_file(tmp / rel)
                for rel in (HEAD_FILE, REFERENCE_FILE, *(extra_files or {}), *(texts or {}))
            },
        )
        meta["checksum"] = _checksum(meta)
        key = os.environ.get(KEY_ENV)
        if key:
            meta["signature"] = _signature(key, meta["checksum"])
        (tmp / MODEL_JSON).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return out


def _need(meta: dict, key: str, kind, where: Path) -> Any:
    if key not in meta:
        raise BundleError(f"{where}: required entry {key!r} is missing")
    v = meta[key]
    if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
        raise BundleError(f"{where}: entry {key!r} has the wrong type ({type(v).__name__})")
    return v


def read_bundle(model_dir: str | Path) -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(meta, head tensors, reference arrays) after checking files, checksums and the schema of
    everything that is not head- or score-specific (the Attributor checks those)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    d = Path(model_dir)
    mj = d / MODEL_JSON
    if not d.is_dir():
        raise BundleError(f"{d}: not a model directory (run `originprobe fit ... --out {d}`)")
    if not mj.is_file():
        raise BundleError(f"{mj}: missing; {d} is not an originprobe model")
    try:
        meta = json.loads(mj.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{mj}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(f"{mj}: not an originprobe model file")
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise BundleError(
            f"{mj}: format version {meta.get('format_version')!r} is not supported (this "
            f"originprobe reads versions {', '.join(map(str, READABLE_VERSIONS))}); refit the model"
        )
    if meta.get("checksum") != _checksum(meta):
        raise BundleError(
            f"{mj}: checksum mismatch — the model description was modified or "
            "damaged; refusing to load it"
        )
    key = os.environ.get(KEY_ENV)
    if key:
        sig = meta.get("signature")
        if not isinstance(sig, str):
            raise BundleError(
                f"{mj}: the bundle is not signed, and {KEY_ENV} is set: refusing "
                "to load an unsigned model"
            )
        if not hmac.compare_digest(sig, _signature(key, meta["checksum"])):
            raise BundleError(
                f"{mj}: bad signature — not signed with the key in {KEY_ENV}; refusing to load it"
            )
    files = _need(meta, "files", dict, mj)
    if meta["format_version"] >= 4 and CARD_FILE not in files:
        raise BundleError(f"{mj}: the model card {CARD_FILE} is not listed among the files")
    for name in {HEAD_FILE, REFERENCE_FILE, *files}:
        f = d / name
        inside = not Path(name).is_absolute() and ".." not in Path(name).parts
        if not inside:
            raise BundleError(f"{mj}: file {name!r} is outside the model directory")
        if not f.is_file():
            raise BundleError(f"{f}: missing")
        if sha256_file(f) != files.get(name):
            raise BundleError(f"{f}: checksum mismatch — modified or damaged; refusing to load it")
    arrays = []
    for name in (HEAD_FILE, REFERENCE_FILE):
        f = d / name
        try:
            arrays.append(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise BundleError(f"{f}: unreadable ({exc})") from None
    check_schema(meta, mj)
    return meta, arrays[0], arrays[1]


def check_schema(meta: dict, where: Path) -> None:
    """Every `SCHEMA` entry present with its type, then what the entries mean."""
    for key, kind in SCHEMA.items():
        if key == "card" and meta.get("format_version") == 3:
            continue  # bundles written before the card
        _need(meta, key, kind, where)
    classes = meta["classes"]
    if (
        not classes
        or not all(isinstance(c, str) and c and c != "unknown" for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise BundleError(f"{where}: 'classes' must be distinct, non-empty names (not 'unknown')")
    for k, kind in (("name", str), ("weights_id", str), ("preprocessing", dict)):
        _need(meta["backbone"], k, kind, where)
    if meta["feature_dim"] < 1:
        raise BundleError(f"{where}: 'feature_dim' must be positive")
    _need(meta["head"], "name", str, where)
    _need(meta["head"], "params", dict, where)
    if _need(meta["head"], "classes", list, where) != classes:
        raise BundleError(f"{where}: the head's classes differ from the model's classes")
    _need(meta["score"], "name", str, where)
    if not math.isfinite(float(meta["threshold"])):
        raise BundleError(f"{where}: threshold {meta['threshold']!r} is not a finite number")
    try:
        check_target_tpr(meta["params"].get("target_tpr"))
    except ConfigError as exc:
        raise BundleError(f"{where}: {exc}") from None


def save_bundle(model_dir: str | Path, att, backbone: dict, networks: Mapping[str, str]) -> Path:
    """Write a fitted Attributor `att` as a bundle: model.json with exactly the `SCHEMA`
    entries, its head, its reference rows and its networks' files."""
    from .._version import __version__

    clf = att.classifier_
    tensors, head_params = clf.head_.get_state()
    X_ref, y_ref = clf.reference_
    idx = {c: i for i, c in enumerate(att.classes_)}
    meta = {
        "originprobe_version": __version__,
        "params": params_json(att),
        "backbone": backbone,
        "layer": str(att.layer_),
        "feature_dim": int(clf.head_.n_features_),
        "head": {"name": clf.head_.name, **head_params},
        "score": {"name": clf.score_name_},
        "threshold": float(clf.threshold_),
        "classes": list(att.classes_),
        "selection": getattr(att, "selection_summary_", {}),
        "counts": getattr(att, "counts_", {}),
        "enrolled": getattr(att, "enrolled_", []),
        "networks": {name: network_file(name) for name in networks},
        "card": {
            "training_data": getattr(att, "training_data_", None)
            or {
                "images": sum((att.counts_.get("train") or {}).values()),
                "per_class": dict(att.counts_.get("train") or {}),
            },
            "test": getattr(att, "card_test_", None),
        },  # fmt: skip
    }
    assert set(meta) == set(SCHEMA), sorted(set(meta) ^ set(SCHEMA))
    reference = {
        "train_features": X_ref,
        "train_labels": np.array([idx[v] for v in y_ref], dtype=np.int64),
    }
    files = {network_file(n): p for n, p in networks.items()}
    card = render_card(meta, getattr(att, "hub_source_", {}).get("repo"))
    return write_bundle(model_dir, meta, tensors, reference, files, {CARD_FILE: card})


def params_json(estimator) -> dict:
    """An estimator's hyper-parameters as JSON (model.json's "params", which `load` passes back
    to the constructor); where and how it runs (`runtime`) is not kept."""
    import dataclasses

    out = {}
    params = getattr(estimator, "resolved_params", lambda: estimator.get_params(deep=False))()
    for k, v in params.items():
        if k == "runtime":
            continue
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            v = v.to_dict() if hasattr(v, "to_dict") else dataclasses.asdict(v)
        elif isinstance(v, Mapping):
            v = dict(v)
        elif isinstance(v, (list, tuple)):
            v = list(v)
        elif v is not None and not isinstance(v, (str, int, float, bool)):
            v = str(v)  # a Perturbation: "jpeg=90"
        out[k] = v
    return out


def network_file(name: str) -> str:
    """Where a bundle keeps the network of backbone member `name` ("learned:ARCH")."""
    return "networks/" + name.replace(":", "-") + ".safetensors"


@dataclass
class ModelParts:
    """Everything a bundle holds, each part checked against the others."""

    meta: dict
    head: Head
    score: str
    layer: LayerSpec
    classes: list[str]
    reference: tuple[np.ndarray, np.ndarray]  # training features and labels
    networks: dict[str, str]  # learned:ARCH member → its network file in the bundle


def read_model(model_dir: str | Path) -> ModelParts:
    """A bundle read and checked whole: files, checksums and schema (`read_bundle`), then the
    head's state, the score it supports, the layer, and the reference arrays against the head's
    feature width and the classes. Every check on load is here."""
    meta, tensors, ref = read_bundle(model_dir)
    where = Path(model_dir) / MODEL_JSON
    head_meta = meta["head"]
    if head_meta["name"] not in HEADS:
        raise BundleError(
            f"{where}: unknown head {head_meta['name']!r} (heads: {', '.join(HEADS.names())})"
        )
    try:
        head = HEADS.get(head_meta["name"]).from_state(tensors, head_meta)
    except HeadStateError as exc:
        raise BundleError(f"{Path(model_dir) / HEAD_FILE}: {exc}") from None
    score = meta["score"]["name"]
    try:
        check_supported(head, score)
        layer = LayerSpec.parse(meta["layer"])
    except ValueError as exc:
        raise BundleError(f"{where}: {exc}") from None
    classes = list(meta["classes"])
    dim = int(meta["feature_dim"])
    if head.n_features_ != dim:
        raise BundleError(
            f"{where}: feature_dim {dim} but the head reads {head.n_features_}-d features"
        )
    arrays = {}
    for part in ("train",):
        X, yi = ref.get(f"{part}_features"), ref.get(f"{part}_labels")
        if X is None or yi is None:
            raise BundleError(
                f"{Path(model_dir) / REFERENCE_FILE}: {part} features or labels missing"
            )
        fits = (X.ndim == 2 and X.shape[1] == dim and len(yi) == len(X) and len(X) > 0
                and yi.min() >= 0 and yi.max() < len(classes) and np.all(np.isfinite(X)))  # fmt: skip
        if not fits:
            raise BundleError(
                f"{Path(model_dir) / REFERENCE_FILE}: {part} features do not fit the model "
                f"({X.shape}, {len(classes)} classes, {dim}-d)"
            )
        arrays[part] = (X.astype(np.float32), np.array(classes, dtype=object)[yi])
    networks = meta.get("networks", {})
    if not isinstance(networks, dict) or any(
        not isinstance(v, str) or v != network_file(k) or v not in meta["files"]
        for k, v in networks.items()
    ):
        raise BundleError(f"{where}: 'networks' must name network files the bundle lists")
    paths = {k: str(Path(model_dir) / v) for k, v in networks.items()}
    return ModelParts(meta, head, score, layer, classes, arrays["train"], paths)
