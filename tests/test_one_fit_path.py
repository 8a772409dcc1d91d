"""One fit path: the same options through the command line and through the Python API give the
same model (the same choice, threshold, head tensors and network file), for a frozen and a
learned backbone. (The same on a Ray cluster: tests/test_ray_engine.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from conftest import write_subset
from originprobe import Attributor
from originprobe.cli import main

KNOWN = ["real", "dalle-mini", "latent-diffusion", "midjourney-v3"]


def same_model(a: Path, b: Path) -> None:
    """Two bundles hold the same model: parameters, choice, threshold, head tensors, networks."""
    ma, mb = (json.loads((d / "model.json").read_text()) for d in (a, b))
    drop = ("seconds", "engine")
    for key in ("params", "layer", "head", "score", "classes", "backbone", "counts"):
        assert ma[key] == mb[key], key
    assert {k: v for k, v in ma["selection"].items() if k not in drop} == {
        k: v for k, v in mb["selection"].items() if k not in drop
    }
    assert ma["threshold"] == mb["threshold"]
    ta, tb = load_file(str(a / "head.safetensors")), load_file(str(b / "head.safetensors"))
    assert ta.keys() == tb.keys() and all(np.array_equal(ta[k], tb[k]) for k in ta)
    for rel in ma["networks"].values():  # the same network: its tensors (the file also
        na, nb = load_file(str(a / rel)), load_file(str(b / rel))  # records training times)
        assert na.keys() == nb.keys() and all(np.array_equal(na[k], nb[k]) for k in na)


def test_cli_and_api_give_the_same_frozen_model(realgen, shared_cache, tmp_path):
    data = write_subset(realgen, tmp_path / "data", {c: 30 for c in KNOWN})
    assert main(["fit", "--data", str(data), "--known", ",".join(KNOWN), "--backbone",
                 "efficientnet-lite0", "--layers", "stage4,stage5", "--cache", str(shared_cache),
                 "--out", str(tmp_path / "cli"), "--quiet"]) == 0  # fmt: skip
    Attributor(
        backbone="efficientnet-lite0", layers="stage4,stage5", runtime={"cache": str(shared_cache)}
    ).fit(data, known=KNOWN).save(tmp_path / "api")
    same_model(tmp_path / "cli", tmp_path / "api")


def test_cli_and_api_give_the_same_learned_model_and_network(realgen, tmp_path):
    """Training settings, seed and the cross-fitted networks reach the API as they reach the
    command line: the same network files are trained (cache keys included) and the same head."""
    data = write_subset(realgen, tmp_path / "data", {c: 14 for c in KNOWN})
    assert main(["fit", "--data", str(data), "--known", ",".join(KNOWN), "--backbone",
                 "learned:forensic-cnn", "--layers", "embed", "--train-epochs", "1",
                 "--train-patch", "32", "--train-loss", "ce", "--seed", "2",
                 "--cache", str(tmp_path / "a"), "--out", str(tmp_path / "cli"),
                 "--quiet"]) == 0  # fmt: skip
    Attributor(
        backbone="learned:forensic-cnn", layers="embed", seed=2,
        training={"epochs": 1, "patch": 32, "loss": "ce"}, runtime={"cache": str(tmp_path / "b")},
    ).fit(data, known=KNOWN).save(tmp_path / "api")  # fmt: skip
    same_model(tmp_path / "cli", tmp_path / "api")
    nets = [sorted(p.parent.name for p in (tmp_path / d).with_name(d + "-networks").glob(
        "*/network.safetensors")) for d in ("a", "b")]  # fmt: skip
    assert nets[0] == nets[1] and len(nets[0]) == 3  # two cross-fitting parts and the final one
