"""Training an embedding network on known classes' native-resolution patches.

Losses (`TrainConfig.loss`) are the registered `training.losses.LOSSES` (`metric`: Fang et al.'s
learned reference points; `ce`: a linear classifier), or `auto`: every one, and the network with
the better known-only validation balanced accuracy is kept. The loss object owns its reference
points or classifier; the saved network is inference-only.

Validation (known classes only, never the test split) runs after every epoch on the grid views
the network reads at inference; the best epoch's weights are kept and training stops after
`patience` epochs without improvement. A checkpoint is written atomically after every epoch, so
a killed run resumes where it stopped; with the same seed a resumed run ends with the same weights
as an uninterrupted one (patches come from per-epoch seeded generators). On a GPU the forward and
backward passes run under autocast (bfloat16 where supported).
"""

from __future__ import annotations

import copy
import io
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..backbones.learned import network_preprocessing, read_network, save_network
from ..backbones.networks import ARCHITECTURES, EmbeddingNetwork, NetworkConfig
from ..errors import ConfigError
from ..fileio import atomic_write_bytes
from ..heads.selection import balanced_accuracy
from ..options import option
from ..runtime import autocast_for, resolve_device
from .losses import LOSSES, TrainingLoss, loss_choices
from .patches import ActivationBank, PatchBank, ViewBank


@dataclass(frozen=True)
class TrainConfig:
    """How a learned network (`learned:ARCH`) is trained; part of its cache key.

    The one set of training defaults: the Python API (`Attributor(training=...)`), the command
    line (`--train-*` options, generated from these fields) and the pipeline all use it.

    Parameters
    ----------
    loss : str
        A registered loss (`training.losses.LOSSES`: ``metric``, ``ce``) or ``auto`` (each; the
        better on known-only validation is kept).
    epochs : int
        Most epochs; validation picks the best one.
    patch : int
        Native patch size in pixels (never resampled).
    folds : int
        Cross-fitting: the training images are split into this many parts and a network is
        trained without each part, whose features it then gives, so that a head never learns
        from features of images their network trained on; a last network, trained on every
        image, serves at inference.
    patience, views, per_image, batch_size, lr, weight_decay, region : int, float
        Early stopping, views read at inference, patches per image and epoch, the optimiser's
        batch, learning rate (scaled by the architecture's `lr_scale`) and weight decay, and the
        un-resampled centre region kept per image.
    seed : int
        Seeds patches and weights; the model's seed replaces it when an `Attributor` trains.
    """

    loss: str = option("auto", "learned:ARCH networks: a loss, or auto (each; known-only "
                       "validation keeps the better)", "training", choices=loss_choices())  # fmt: skip
    epochs: int = option(16, "learned:ARCH: most training epochs (validation picks the best one)",
                         "training", metavar="N")  # fmt: skip
    patch: int = option(64, "learned:ARCH: native patch size in pixels", "training", metavar="PX")
    folds: int = option(2, "learned:ARCH: cross-fitting parts (a head never learns from features "
                        "of images their network trained on)", "training", metavar="K")  # fmt: skip
    patience: int = 8  # epochs without a better validation figure before stopping
    views: int = 16  # 4×4 grid: with 64-px patches it tiles a 256-px picture
    per_image: int = 4  # patches drawn per training image and epoch
    batch_size: int = 64
    lr: float = 2e-3  # × the architecture's lr_scale
    weight_decay: float = 1e-4
    region: int = 256  # un-resampled centre region kept per training image
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in loss_choices():
            raise ConfigError(
                f"training loss {self.loss!r}: use one of {', '.join(loss_choices())}"
            )
        for name, lo in (("epochs", 1), ("patience", 1), ("per_image", 1), ("batch_size", 2),
                         ("folds", 2)):  # fmt: skip
            if int(getattr(self, name)) < lo:
                raise ConfigError(f"training {name} must be at least {lo}")
        if not 16 <= self.patch <= self.region:
            raise ConfigError(f"patch size {self.patch} must be in 16..{self.region} (region)")

    @classmethod
    def of(cls, value: "TrainConfig | Mapping[str, Any] | None", **changes) -> "TrainConfig":
        """A TrainConfig from a TrainConfig, a mapping of its fields or None, with `changes`."""
        import dataclasses

        if value is None:
            value = cls()
        elif isinstance(value, Mapping):
            names = {f.name for f in dataclasses.fields(cls)}
            bad = sorted(set(value) - names)
            if bad:
                raise ConfigError(f"training has no setting(s) {bad}; it has {sorted(names)}")
            value = cls(**value)
        elif not isinstance(value, TrainConfig):
            raise ConfigError(f"training must be a TrainConfig or a mapping, not {value!r}")
        return dataclasses.replace(value, **changes) if changes else value

    def losses(self) -> tuple[str, ...]:
        return tuple(LOSSES.names()) if self.loss == "auto" else (self.loss,)


@dataclass(frozen=True)
class TrainRun:
    """Where and how one training run executes (not what it learns): the checkpoint key it
    resumes, the device, an image transform, a starting network file, progress."""

    key: str = ""
    device: "str | torch.device | None" = None
    transform: object = None  # PIL → PIL, applied to every image (JPEG alignment)
    init: str | Path | None = None
    progress: bool = True
    desc: str = "train"


@dataclass
class TrainResult:
    path: Path
    summary: dict = field(default_factory=dict)


@torch.inference_mode()
def embed_views(
    net: EmbeddingNetwork, views: torch.Tensor, device: torch.device, batch: int = 64
) -> torch.Tensor:
    """Pooled embeddings of (N, V, 3, P, P) uint8 views (the inference path)."""
    net.eval()
    pre = network_preprocessing(views.shape[-1], 1)
    out = []
    for i in range(0, len(views), batch):
        v = views[i : i + batch]
        x = pre.normalize(v.to(device))
        with autocast_for(device):
            z = net(x).float()
        out.append(z.view(len(v), views.shape[1], -1).mean(1).cpu())
    return torch.cat(out) if out else torch.zeros(0, net.config.embed_dim)


@torch.inference_mode()
def embed_maps(
    net: EmbeddingNetwork, maps: list[torch.Tensor], device: torch.device, batch: int = 32
) -> torch.Tensor:
    """Embeddings of whole pictures from their frozen-stage activation maps (what the network
    computes from the pictures themselves: its frozen stages are deterministic)."""
    net.eval()
    out = []
    for i in range(0, len(maps), batch):
        x = torch.stack(maps[i : i + batch]).to(device).float()
        with autocast_for(device):
            out.append(net.embed_maps(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, net.config.embed_dim)


def validate(
    net: EmbeddingNetwork, val: "ViewBank | ActivationBank", loss: TrainingLoss,
    device: torch.device,
) -> float:  # fmt: skip
    if len(val) == 0:
        return float("nan")
    if isinstance(val, ActivationBank):
        z = embed_maps(net, val.maps, device)
    else:
        z = embed_views(net, val.views, device)
    with torch.inference_mode():
        pred = loss.logits(z.to(device)).argmax(1).cpu().numpy()
    return float(balanced_accuracy(val.labels.numpy(), pred))


class _Bar:
    """One tqdm bar over every step of the run: loss, validation figure, images/s and ETA."""

    def __init__(self, total: int, desc: str, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="step", disable=not enabled,
                        dynamic_ncols=True, file=sys.stderr)  # fmt: skip

    def step(self, n: int, **post) -> None:
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


def _read_checkpoint(path: Path) -> dict | None:
    """The checkpoint at `path`, or None (none yet, or unreadable: training starts over)."""
    if not path.is_file():
        return None
    try:  # our own file, written atomically; it holds optimizer state, not only tensors
        ck = torch.load(path, map_location="cpu", weights_only=False)
        return ck if isinstance(ck, dict) else None
    except Exception as exc:  # noqa: BLE001 - a damaged checkpoint must not stop training
        import warnings

        warnings.warn(f"{path}: unreadable checkpoint ({exc}); training starts over", stacklevel=2)
        return None


def _checkpoint_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def train_one(
    config: NetworkConfig,
    train: "PatchBank | ActivationBank",
    val: "ViewBank | ActivationBank",
    cfg: TrainConfig,
    loss_name: str,
    checkpoint: Path,
    run: TrainRun,
    init: EmbeddingNetwork | None = None,
) -> tuple[EmbeddingNetwork, dict]:
    """Train with one loss; resumes from `checkpoint` when it holds a run of the same key."""
    key, device, progress, desc = run.key, resolve_device(run.device), run.progress, run.desc
    loss = loss_name
    torch.manual_seed(cfg.seed)
    # a copy: with loss auto, each loss starts from the same pretrained trunk
    net = copy.deepcopy(init).with_classes(config.classes) if init is not None \
        else EmbeddingNetwork(config)  # fmt: skip
    head = LOSSES.get(loss_name)(len(config.classes), config.embed_dim)
    net.to(device)
    head.to(device)
    params = [p for p in net.parameters() if p.requires_grad] + list(head.parameters())
    lr = cfg.lr * ARCHITECTURES.get(config.arch).lr_scale
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(cfg.per_image * len(train) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, steps_per_epoch // 2)

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    start, best, best_epoch, best_state, history = 0, -1.0, -1, None, []
    ck = _read_checkpoint(checkpoint)
    if ck is not None:
        if ck.get("key") == key and ck.get("loss") == loss:
            net.load_state_dict(ck["model"])
            head.load_state_dict(ck["loss_state"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            start, best, best_epoch = ck["epoch"], ck["best"], ck["best_epoch"]
            best_state, history = ck["best_state"], ck["history"]
            torch.set_rng_state(ck["rng"])
    resumed = start
    bar = _Bar(total, desc + f" [{loss}]", progress)
    bar.step(start * steps_per_epoch)
    pixels_in = network_preprocessing(cfg.patch, 1)
    seen, t0 = 0, time.perf_counter()
    for epoch in range(start, cfg.epochs):
        if best_epoch >= 0 and epoch - best_epoch > cfg.patience:
            break
        net.train()
        losses = []
        for x, y in train.epoch(cfg.seed, epoch, cfg.patch, cfg.per_image, cfg.batch_size):
            y = y.to(device)
            with autocast_for(device):
                if isinstance(train, ActivationBank):
                    z = net.embed_maps(x.to(device, non_blocking=True))
                else:
                    x = pixels_in.normalize(x.to(device))
                    z = net(x)
            l = head(z.float(), y)
            opt.zero_grad(set_to_none=True)
            l.backward()
            opt.step()
            sched.step()
            losses.append(float(l.detach()))
            seen += len(x)
            rate = seen / max(1e-9, time.perf_counter() - t0)
            bar.step(1, loss=f"{np.mean(losses[-20:]):.3f}", val=f"{max(best, 0):.3f}",
                     img_s=f"{rate:.0f}")  # fmt: skip
        score = validate(net, val, head, device)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val": score})
        if score > best or math.isnan(score):  # no validation images: keep the latest
            best, best_epoch = score, epoch
            best_state = copy.deepcopy({k: v.cpu() for k, v in net.state_dict().items()})
        atomic_write_bytes(
            checkpoint,
            _checkpoint_bytes({
                "key": key, "loss": loss, "epoch": epoch + 1, "model": net.state_dict(),
                "loss_state": head.state_dict(),
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "best": best,
                "best_epoch": best_epoch, "best_state": best_state, "history": history,
                "rng": torch.get_rng_state(),
            }),
        )  # fmt: skip
    bar.close()
    seconds = time.perf_counter() - t0
    net.load_state_dict(best_state)
    summary = {
        "loss": loss,
        "val_balanced_accuracy": round(best, 4) if math.isfinite(best) else None,
        "best_epoch": best_epoch + 1,
        "epochs_run": len(history),
        "resumed_at_epoch": resumed,
        "images_per_second": round(seen / seconds, 1) if seen else None,
        "seconds": round(seconds, 1),
        "history": history,
    }
    return net.cpu().eval(), summary


def train_network(
    config: NetworkConfig,
    train_samples: Sequence,
    val_samples: Sequence,
    cfg: TrainConfig,
    out: str | Path,
    run: TrainRun = TrainRun(),
) -> TrainResult:
    """Train `config`'s network on `train_samples`, choose epochs (and, with loss `auto`, the
    loss) on `val_samples`, and write it to `out` (a network file). Checkpoints sit beside it."""
    dev = resolve_device(run.device)
    transform, init = run.transform, run.init
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    classes = config.classes
    t0 = time.perf_counter()
    start_net = read_network(init)[0] if init is not None else None
    probe = start_net if start_net is not None else EmbeddingNetwork(config)
    # a network trained on activation maps reads the whole native region at inference
    read = (cfg.region, 1) if probe.trains_on_maps else (cfg.patch, cfg.views)
    pixels = PatchBank.decode(train_samples, classes, cfg.region, cfg.patch, transform)
    if len(pixels) == 0:
        raise ConfigError("no readable training image for the network")
    missing = sorted(set(classes) - {classes[i] for i in pixels.labels.unique().tolist()})
    if missing:
        raise ConfigError(f"no readable training image for classes {missing}")
    train: PatchBank | ActivationBank = pixels
    val: ViewBank | ActivationBank
    if probe.trains_on_maps:  # the frozen stages run once per image, for training and validation
        probe.to(dev)
        train = ActivationBank.from_pixels(pixels, probe, dev)
        region = int(pixels.images[0].shape[-1])
        val_pixels = PatchBank.decode(val_samples, classes, region, cfg.patch, transform)
        val = ActivationBank.from_pixels(val_pixels, probe, dev)
        read = (region, 1)
    else:
        val = ViewBank.decode(val_samples, classes, *read, transform)
    del pixels, probe
    decode_s = time.perf_counter() - t0
    results = []
    for loss in cfg.losses():
        ck = out.with_name(out.stem + f".{loss}.checkpoint")
        net, summary = train_one(config, train, val, cfg, loss, ck, run, start_net)
        results.append((summary["val_balanced_accuracy"] or 0.0, -len(results), net, summary))
    best = max(results, key=lambda r: (r[0], r[1]))
    net, summary = best[2], best[3]
    info = {
        "patch": read[0],
        "views": read[1],
        "training": {
            **summary,
            "config": asdict(cfg),
            "candidates": {r[3]["loss"]: r[3]["val_balanced_accuracy"] for r in results},
            "train_images": len(train),
            "val_images": len(val),
            "skipped": [(p.path, p.reason) for p in train.problems + val.problems],
            "decode_seconds": round(decode_s, 1),
            "total_seconds": round(time.perf_counter() - t0, 1),
            "device": str(dev),
            "init": str(init) if init else None,
        },
    }
    save_network(net, out, info)
    for r in results:  # a finished network makes its checkpoints useless
        out.with_name(out.stem + f".{r[3]['loss']}.checkpoint").unlink(missing_ok=True)
    return TrainResult(out, info["training"])
