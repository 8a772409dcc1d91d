"""Model bundles: a fitted attributor saved as a directory of safetensors + JSON.

    MODEL_DIR/model.json        what to load: backbone (name, weights id, preprocessing), layer,
                                head name and params, class names, score, reject threshold,
                                format_version, the sha256 of head.safetensors and a checksum
    MODEL_DIR/head.safetensors  the head's tensors

Loading never executes code: no pickle, only JSON and safetensors. A bundle whose checksum does not
match, whose format version is unknown or whose files are missing is refused with `BundleError`.
Saving is atomic: the new bundle is written beside the target and swapped in by rename, so an
interrupted save never leaves a half-written model over an existing one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backbones.base import file_digest
from ..heads import HEADS, Head

FORMAT = "originprobe-model"
FORMAT_VERSION = 1
MODEL_JSON = "model.json"
TENSORS = "head.safetensors"


class BundleError(Exception):
    """A model directory that cannot be loaded safely; the message says which file and why."""


@dataclass
class Bundle:
    head: Head
    backbone: dict          # name, weights_id, preprocessing, cache_key
    layer: str
    score: str
    threshold: float
    target_tpr: float
    known_classes: list[str]
    extra: dict[str, Any] = field(default_factory=dict)  # training set, selection, metadata


def _canonical(meta: dict) -> bytes:
    return json.dumps({k: v for k, v in meta.items() if k != "checksum"}, sort_keys=True,
                      separators=(",", ":")).encode()


def save_bundle(bundle: Bundle, out_dir: str | Path) -> Path:
    from safetensors.numpy import save_file
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BundleError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MODEL_JSON).exists():
        raise BundleError(f"{out}: directory is not empty and is not an originprobe model; "
                          "refusing to overwrite it")
    tensors, head_params = bundle.head.get_state()
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(tmp / TENSORS))
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "backbone": bundle.backbone, "layer": bundle.layer,
            "head": {"name": bundle.head.name, **head_params},
            "score": bundle.score, "threshold": float(bundle.threshold),
            "target_tpr": float(bundle.target_tpr), "known_classes": list(bundle.known_classes),
            "extra": bundle.extra, "tensors_sha256": file_digest(tmp / TENSORS),
        }
        meta["checksum"] = hashlib.sha256(_canonical(meta)).hexdigest()
        with open(tmp / MODEL_JSON, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(out, old)
        os.rename(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_model_json(model_dir: str | Path) -> dict:
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
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{mj}: format version {meta.get('format_version')!r} is not supported "
                          f"(this originprobe reads version {FORMAT_VERSION}); refit the model")
    if meta.get("checksum") != hashlib.sha256(_canonical(meta)).hexdigest():
        raise BundleError(f"{mj}: checksum mismatch — the model description was modified or "
                          "damaged; refusing to load it")
    return meta


def load_bundle(model_dir: str | Path) -> Bundle:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    d = Path(model_dir)
    meta = read_model_json(d)
    tf = d / TENSORS
    if not tf.is_file():
        raise BundleError(f"{tf}: missing")
    if file_digest(tf) != meta["tensors_sha256"]:
        raise BundleError(f"{tf}: checksum mismatch — the head weights were modified or damaged; "
                          "refusing to load them")
    try:
        tensors = load_file(str(tf))
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(f"{tf}: unreadable ({exc})") from None
    head_meta = dict(meta["head"])
    name = head_meta.pop("name")
    if name not in HEADS:
        raise BundleError(f"{d / MODEL_JSON}: unknown head {name!r} (known: {sorted(HEADS)})")
    head = HEADS[name].from_state(tensors, head_meta)
    return Bundle(head=head, backbone=meta["backbone"], layer=meta["layer"], score=meta["score"],
                  threshold=float(meta["threshold"]), target_tpr=float(meta["target_tpr"]),
                  known_classes=list(meta["known_classes"]), extra=meta.get("extra", {}))
