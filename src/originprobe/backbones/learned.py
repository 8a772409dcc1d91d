"""`learned:ARCH`: an embedding network originprobe trained itself, used as a frozen backbone.

A trained network is one safetensors file: its tensors, and in the file's metadata what builds it
(`NetworkConfig`), the patch size and views it reads, and how it was trained. Its `weights_id` is
the file's sha256, so the feature cache and model bundles are keyed by the exact weights.

It reads native-resolution patches (never resampled): at inference `views` patches on a grid
spanning the picture, whose features are averaged (multi-crop pooling). Layers: `pool` (the
trunk's pooled feature) and `embed` (the metric embedding the network was trained on).

Where the file comes from: `--weights FILE`, or `networks={"learned:ARCH": FILE}` (what a
training run or a model bundle hands over). Without either it is an error that says how to train
one; nothing is ever trained or downloaded behind the caller's back.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..errors import ConfigError
from ..fileio import atomic_write_bytes
from .base import Backbone, Preprocessing, WeightsNotFoundError
from .networks import ARCHITECTURES, EmbeddingNetwork, NetworkConfig
from .registry import register_prefix

PREFIX = "learned"
FORMAT = "originprobe-network"
MEAN = STD = (0.5, 0.5, 0.5)  # pixels to [-1, 1]; what EfficientNet-Lite's ImageNet weights expect


class NetworkFileError(WeightsNotFoundError):
    """A network file that is missing, damaged or not an originprobe network."""


def is_learned(name: str) -> bool:
    """Whether backbone member `name` (no fusion) is a trained network."""
    return name.split("@", 1)[0].startswith(PREFIX + ":")


def network_preprocessing(patch: int, views: int) -> Preprocessing:
    return Preprocessing(
        input_size=patch, resize_size=patch, mean=MEAN, std=STD, crop="native", views=views
    )


def save_network(net: EmbeddingNetwork, path: str | Path, info: dict) -> Path:
    """Write `net` with `info` (patch, views, training summary) as one safetensors file,
    atomically."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    meta = {"format": FORMAT, "network": net.config.to_dict(), **info}
    blob = save(state, metadata={"originprobe": json.dumps(meta, sort_keys=True)})
    atomic_write_bytes(path, blob)
    return Path(path)


def read_network(path: str | Path, imagenet: bool = False) -> tuple[EmbeddingNetwork, dict]:
    """(network, metadata) of a file written by `save_network`; every failure names the file."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise NetworkFileError(f"{p}: no such network file")
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get("originprobe")
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError) as exc:
        raise NetworkFileError(f"{p}: not a readable safetensors file ({exc})") from None
    try:
        meta = json.loads(raw or "")
        assert meta.get("format") == FORMAT
        config = NetworkConfig.from_dict(meta["network"])
    except (ValueError, AssertionError, KeyError, TypeError, ConfigError) as exc:
        raise NetworkFileError(f"{p}: not an originprobe network ({exc})") from None
    net = EmbeddingNetwork(config, imagenet=imagenet)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise NetworkFileError(f"{p}: its tensors do not fit {config.arch} ({exc})") from None
    return net, meta


def weights_digest(net: torch.nn.Module) -> str:
    """sha256 over the network's tensors in name order: the same weights give the same id."""
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class LearnedBackbone(Backbone):
    prefers_channels_last = False

    def __init__(self, arch: str, path: str | Path):
        super().__init__()
        net, meta = read_network(path)
        if net.config.arch != arch:
            raise NetworkFileError(f"{path}: holds a {net.config.arch} network, not {arch}")
        self.net = net.eval().requires_grad_(False)
        self.name = self.network_name = f"{PREFIX}:{arch}"  # name stays when @native renames
        self.weights_id = weights_digest(net)  # the tensors', not the file's (timings differ)
        self.path = str(Path(path).resolve())
        self.info = meta
        self.classes = list(net.config.classes)
        self.preprocessing = network_preprocessing(int(meta["patch"]), int(meta["views"]))
        self.layer_names = ["pool", "embed"]
        self.feature_dims = {"pool": int(net.trunk.out_dim), "embed": net.config.embed_dim}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net.features(x)

    def describe(self) -> dict:
        return super().describe() | {"training": self.info.get("training", {})}


def learned_members(backbone: Backbone) -> dict[str, str]:
    """{"learned:ARCH": network file} of a backbone's trained members (a fusion's, or its own)."""
    members = list(getattr(backbone, "members", None) or [backbone])
    return {m.network_name: m.path for m in members if isinstance(m, LearnedBackbone)}


def build(ident: str, weights=None, networks: dict | None = None, **_: object) -> Backbone:
    if ident not in ARCHITECTURES:
        raise ConfigError(
            f"learned:{ident}: unknown network; known: "
            + ", ".join(f"learned:{a}" for a in ARCHITECTURES.names())
        )
    path = weights or (networks or {}).get(f"{PREFIX}:{ident}")
    if path is None:
        raise WeightsNotFoundError(
            f"learned:{ident} has no trained weights here: `fit` and `evaluate` train it on the "
            "training split, or pass --weights NETWORK.safetensors"
        )
    return LearnedBackbone(ident, path)


register_prefix(PREFIX, build)
