"""`make bench` section `training`: what training a learned network costs on this machine.

For each architecture, the default training (`TrainConfig()`: loss auto = metric and
cross-entropy, each up to 16 epochs of 4 native 64-px patches per image, validation after every
epoch) on realgen split 1's known-class training images, divided as the final network of
`evaluate --protocol realgen:split1` divides them: 80% to learn from, 20% to pick the epoch and
the loss. Prints patches/s while training, epochs
run, the epoch validation chose, seconds per loss and in all. Under a GPU the same code runs
with autocast.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path


def main(data: Path, work: Path, quick: bool) -> None:
    import torch

    from originprobe.backbones.networks import NetworkConfig
    from originprobe.model.preparation import dev_samples
    from originprobe.pipeline.config import RunConfig
    from originprobe.pipeline.prepare import _protocol_split
    from originprobe.training import TrainConfig, TrainRun, train_network
    from originprobe.training.cache import network_split

    cfg = RunConfig(protocol="realgen:split1", root=str(data), runtime={"progress": False})
    _, split, _ = _protocol_split(cfg, True)
    archs = ["forensic-cnn"] if quick else ["forensic-cnn", "efficientnet-lite0"]
    for arch in archs:
        tc = TrainConfig(epochs=2) if quick else TrainConfig()
        nc = NetworkConfig(arch=arch, classes=tuple(split.known_classes))
        fit, pick = network_split(dev_samples(split), tc.seed)  # the final network's images
        with tempfile.TemporaryDirectory(dir=work) as tmp:
            t = time.perf_counter()
            r = train_network(nc, fit, pick, tc, Path(tmp) / "n.safetensors",
                              TrainRun(key=str(time.time()), progress=False))  # fmt: skip
            wall = time.perf_counter() - t
        s = r.summary
        row = {
            "arch": arch,
            "device": s["device"],
            "threads": torch.get_num_threads(),
            "train_images": s["train_images"],
            "val_images": s["val_images"],
            "losses": s["candidates"],
            "kept": s["loss"],
            "epochs_run": s["epochs_run"],
            "best_epoch": s["best_epoch"],
            "patches_per_s": s["images_per_second"],
            "seconds_kept_loss": s["seconds"],
            "decode_s": s["decode_seconds"],
            "wall_s": round(wall, 1),
        }
        print(json.dumps({"section": "training", **row}), flush=True)
