"""Training an embedding network on known classes' native-resolution patches.

Losses (`TrainConfig.loss`):
- `metric` (Fang et al., BMVC 2023): one learned reference point per class; the logits are the
  negative squared distances to the references (distance-based cross-entropy), plus a pull term
  that draws each embedding onto its class's reference, so known classes stay compact and images
  of unseen generators land far from every reference. Prediction: the nearest reference.
- `ce`: a linear classifier with plain cross-entropy. Prediction: the largest logit.
- `auto`: both, and the one with the better known-only validation balanced accuracy is kept.

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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..backbones.base import resolve_device
from ..backbones.learned import network_preprocessing, read_network, save_network
from ..backbones.networks import EmbeddingNetwork, NetworkConfig
from ..errors import ConfigError
from ..features.forward import autocast_for
from ..fileio import atomic_write_bytes
from ..heads.selection import balanced_accuracy
from .patches import ActivationBank, PatchBank, ViewBank

LOSSES = ("metric", "ce", "auto")


@dataclass(frozen=True)
class TrainConfig:
    """How a network is trained (part of its cache key)."""

    loss: str = "auto"
    epochs: int = 16
    patience: int = 8  # epochs without a better validation figure before stopping
    patch: int = 64
    views: int = 16  # 4×4 grid: with 64-px patches it tiles a 256-px picture
    per_image: int = 4  # patches drawn per training image and epoch
    batch_size: int = 64
    lr: float = 2e-3  # from scratch; fine-tuning uses lr / 4
    weight_decay: float = 1e-4
    pull_weight: float = 0.05  # metric loss: weight of the pull onto the own reference
    region: int = 256  # un-resampled centre region kept per training image
    seed: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"training loss {self.loss!r}: use one of {', '.join(LOSSES)}")
        for name, lo in (("epochs", 1), ("patience", 1), ("per_image", 1), ("batch_size", 2)):
            if int(getattr(self, name)) < lo:
                raise ConfigError(f"training {name} must be at least {lo}")
        if not 16 <= self.patch <= self.region:
            raise ConfigError(f"patch size {self.patch} must be in 16..{self.region} (region)")


@dataclass
class TrainResult:
    path: Path
    summary: dict = field(default_factory=dict)


def logits_of(net: EmbeddingNetwork, z: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "metric":
        return -torch.cdist(z.float(), net.references.float()).pow(2)
    return net.classifier(z)


def loss_of(net: EmbeddingNetwork, z: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, loss: str):
    logits = logits_of(net, z, loss)
    out = F.cross_entropy(logits, y)
    if loss == "metric":
        out = out + cfg.pull_weight * (-logits.gather(1, y[:, None])).mean()
    return out


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
    net: EmbeddingNetwork, val: "ViewBank | ActivationBank", loss: str, device: torch.device
) -> float:
    if len(val) == 0:
        return float("nan")
    if isinstance(val, ActivationBank):
        z = embed_maps(net, val.maps, device)
    else:
        z = embed_views(net, val.views, device)
    with torch.inference_mode():
        pred = logits_of(net, z.to(device), loss).argmax(1).cpu().numpy()
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
    loss: str,
    checkpoint: Path,
    key: str,
    device: torch.device,
    init: EmbeddingNetwork | None = None,
    progress: bool = True,
    desc: str = "train",
) -> tuple[EmbeddingNetwork, dict]:
    """Train with one loss; resumes from `checkpoint` when it holds a run of the same `key`."""
    torch.manual_seed(cfg.seed)
    # a copy: with loss auto, each loss starts from the same pretrained trunk
    net = copy.deepcopy(init).with_classes(config.classes) if init is not None \
        else EmbeddingNetwork(config)  # fmt: skip
    net.to(device)
    params = [p for p in net.parameters() if p.requires_grad]
    lr = cfg.lr if config.arch == "forensic-cnn" else cfg.lr / 4
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
            l = loss_of(net, z.float(), y, cfg, loss)
            opt.zero_grad(set_to_none=True)
            l.backward()
            opt.step()
            sched.step()
            losses.append(float(l.detach()))
            seen += len(x)
            rate = seen / max(1e-9, time.perf_counter() - t0)
            bar.step(1, loss=f"{np.mean(losses[-20:]):.3f}", val=f"{max(best, 0):.3f}",
                     img_s=f"{rate:.0f}")  # fmt: skip
        score = validate(net, val, loss, device)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val": score})
        if score > best or math.isnan(score):  # no validation images: keep the latest
            best, best_epoch = score, epoch
            best_state = copy.deepcopy({k: v.cpu() for k, v in net.state_dict().items()})
        atomic_write_bytes(
            checkpoint,
            _checkpoint_bytes({
                "key": key, "loss": loss, "epoch": epoch + 1, "model": net.state_dict(),
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
    key: str,
    device=None,
    transform=None,
    init: str | Path | None = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train `config`'s network on `train_samples`, choose epochs (and, with loss `auto`, the
    loss) on `val_samples`, and write it to `out` (a network file). Checkpoints sit beside it."""
    dev = resolve_device(device)
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
    for loss in ("metric", "ce") if cfg.loss == "auto" else (cfg.loss,):
        ck = out.with_name(out.stem + f".{loss}.checkpoint")
        net, summary = train_one(config, train, val, cfg, loss, ck, key, dev, start_net,
                                 progress, desc)  # fmt: skip
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
