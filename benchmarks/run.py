"""originprobe benchmarks (`make bench`): speed and memory figures, printed, never asserted.

1. extraction: end-to-end images/s (decode in workers + model + store) vs the backbone's pure
   forward images/s at the same batch size; the ratio shows whether the data pipeline keeps up.
2. selection: time of the whole layer × C sweep of the linear head on the demo split.
3. memory: peak RSS of extraction runs over 1×, 4× and 16× as many images (each in a fresh
   process); it must stay flat as the number of images grows.
4. transformer backbones (random weights): forward images/s of CLIP ViT-B/16 and ViT-L/14 on the
   GPU when one is present, on CPU at a small batch otherwise.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
KNOWN = ["real", "dalle-mini", "latent-diffusion", "glid3-xl", "midjourney-v3"]


def forward_speed(backbone, batch: int, device: torch.device, iters: int = 4) -> float:
    size = backbone.preprocessing.input_size
    x = torch.randn(batch, 3, size, size, device=device)
    bb = backbone.to(device).eval()
    if getattr(bb, "prefers_channels_last", True):
        bb = bb.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    from originprobe.features.extract import _autocast
    with torch.inference_mode(), _autocast(device):
        bb(x)  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(iters):
            bb(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return batch * iters / (time.perf_counter() - t)


def bench_extraction(data: Path, n: int, batch: int) -> dict:
    from originprobe.backbones import load_backbone
    from originprobe.data import load_dataset
    from originprobe.features import extract_features, open_store
    samples = load_dataset(data).samples[:n]
    bb = load_backbone()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # the pure forward speed is taken before and after and averaged: on a shared machine the
    # speed drifts, and one measurement on one side would bias the ratio
    before = forward_speed(bb, batch, device, iters=8)
    with tempfile.TemporaryDirectory() as cache:
        rep = extract_features(samples, bb, open_store(cache, bb), batch_size=batch,
                               progress=False, device=device)
    after = forward_speed(bb, batch, device, iters=8)
    pure = (before + after) / 2
    return {"images": rep.computed, "batch": batch, "device": device.type,
            "end_to_end_img_s": round(rep.images_per_second, 1), "forward_img_s": round(pure, 1),
            "forward_before_after": [round(before, 1), round(after, 1)],
            "ratio": round(rep.images_per_second / pure, 3),
            "model_waiting_for_images": round(rep.loader_wait_seconds / rep.seconds, 3)}


def bench_sweep(data: Path, cache: Path) -> list[dict]:
    """The whole layer × C sweep (single layers), then with greedy layer combination."""
    from originprobe.heads import LinearHead, head_factory
    from originprobe.heads.selection import select_head
    from originprobe.pipeline import RunConfig, prepare
    p = prepare(RunConfig(data=str(data), known=KNOWN, cache=str(cache), progress=False))
    for role in ("train", "val"):
        for layer in p.layers:
            p.features(role, layer)  # load once, so the figure is the sweep alone
    rows = []
    for combine in (1, 3):
        t = time.perf_counter()
        sel = select_head(head_factory("linear", 0), p.features, p.layers,
                          p.features.labels("train"), p.features.labels("val"),
                          p.split.known_classes, combine=combine)
        rows.append({"combine_layers": combine, "layers": len(p.layers),
                     "C_values": len(LinearHead.param_grid["C"]), "fits": len(sel.rows),
                     "train_samples": len(p.split.train),
                     "sweep_s": round(time.perf_counter() - t, 2),
                     "selected": [sel.layer, sel.params]})
    return rows


_RSS_CHILD = r"""
import json, resource, sys, tempfile, torch
torch.set_num_threads(2)
from originprobe.backbones import load_backbone
from originprobe.data import load_dataset
from originprobe.features import extract_features, open_store
n, data = int(sys.argv[1]), sys.argv[2]
samples = load_dataset(data).samples[:n]
bb = load_backbone()
with tempfile.TemporaryDirectory() as cache:
    rep = extract_features(samples, bb, open_store(cache, bb), batch_size=32, num_workers=2,
                           shard_size=64, progress=False)
print(json.dumps({"images": rep.computed,
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "peak_rss_decode_worker_mb":
                      round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}))
"""


def bench_memory(data: Path, sizes: list[int]) -> list[dict]:
    rows = []
    for n in sizes:
        r = subprocess.run([sys.executable, "-c", _RSS_CHILD, str(n), str(data)],
                           capture_output=True, text=True, check=True)
        rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
    return rows


def bench_transformers() -> list[dict]:
    from originprobe.backbones import load_backbone
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for name in ("clip-vit-b16", "clip-vit-l14"):
        try:
            bb = load_backbone(name, weights="random")
        except Exception as exc:  # the family may be unavailable in a minimal install
            rows.append({"backbone": name, "error": str(exc)[:200]})
            continue
        batch = 128 if device.type == "cuda" else 8
        rows.append({"backbone": name, "device": device.type, "batch": batch,
                     "blocks": len(bb.layer_names),
                     "forward_img_s": round(forward_speed(bb, batch, device, iters=3), 1)})
        del bb
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "realgen"))
    ap.add_argument("--cache", default=str(REPO / ".cache" / "features"))
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    a = ap.parse_args()
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    data = Path(a.data)
    n = 128 if a.quick else 1536  # long enough that worker start-up is not the figure
    print("== extraction: end to end vs pure forward (same batch size)")
    print(json.dumps(bench_extraction(data, n, batch=32)))
    print("== linear head: whole layer × C sweep on the demo split (features cached); "
          "combine_layers 3 adds the greedy layer-combination search")
    for row in bench_sweep(data, Path(a.cache)):
        print(json.dumps(row))
    print("== peak RSS of extraction vs number of images (batch 32, shards of 64)")
    sizes = [64, 256] if a.quick else [96, 384, 1536]
    for row in bench_memory(data, sizes):
        print(json.dumps(row))
    print("== transformer backbones, random weights: forward images/s")
    for row in bench_transformers():
        print(json.dumps(row))


if __name__ == "__main__":
    main()
