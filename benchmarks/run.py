"""originprobe benchmarks (`make bench`): speed and memory figures, printed, never asserted.

Sections (run all, or some with --only a,b):
  sweep      the C sweep of the reference pipeline's settings (45 C values 1e-6..1e5, lbfgs,
             tol 1e-12, max_iter 1000) on one block's cached features: a plain scikit-learn loop
             vs originprobe's batched solver; times, the C each chooses, validation accuracy and
             AUROC at that C, and agreement over every C
  vit        the full 12-block run: a randomly initialised ViT-tiny (hidden 192, 12 layers,
             3 heads, patch 16; `hf:` with local weights, saved by this script), cold cache,
             `originprobe evaluate --layers all` on realgen (known = real + the four largest
             generators); wall time, extraction, selection, peak RSS; and the reference
             pipeline's time on the same machine, projected from its measured parts; then the
             same cold run on 2,574 re-crops (memory goal < 1.5 GB, wall against one forward)
  evaluate   a cold-cache `evaluate` over every layer of the default backbone against the pure
             forward time over the same images
  extraction end-to-end extraction vs the pure forward pass, for PyTorch and ONNX Runtime; where
             decoding time goes (PNG, JPEG with Pillow and with torchvision, draft mode, resize)
  scaling    time and peak RSS of `evaluate` against the number of images (re-crops of realgen,
             up to 20k) and of selection against the number of layers
  gpu        (only with a GPU) a CLIP ViT-B/16-shaped random model in bf16 from JPEG files:
             images/s, and how long the forward waited for decoded images
  serve      the HTTP service under load vs `originprobe predict` in one process
  ray        Ray vs local extraction on this machine
  provenance predict on 1,000 images without metadata, with and without the evidence record
  selection  head selection at CLIP ViT-L/14 × OSMA scale on synthetic features in a feature
             store (24 × 1024 dims, 15 classes, 6k-48k rows): wall, peak RSS, the choice; the
             exhaustive scikit-learn sweep against the screened one on a small instance
  discovery  clustering 50,000 rejected images (4,608-d features): wall, peak RSS, groups found
  training   training a learned network (forensic CNN, EfficientNet-Lite0) with the defaults on
             realgen split 1: patches/s, epochs, the epoch validation chose, seconds
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from common import KNOWN, REPO, cli, emit, realgen_rows, recrops, run_measured  # noqa: F401

SECTIONS = (
    "sweep",
    "vit",
    "evaluate",
    "extraction",
    "scaling",
    "gpu",
    "serve",
    "ray",
    "provenance",
    "selection",
    "training",
    "discovery",
)


# ---------------------------------------------------------------- models and data
def make_vit_tiny(path: Path) -> Path:
    """A randomly initialised ViT-tiny saved in the Hugging Face layout (seeded)."""
    if (path / "config.json").is_file():
        return path
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(
        hidden_size=192,
        num_hidden_layers=12,
        num_attention_heads=3,
        intermediate_size=768,
        patch_size=16,
        image_size=224,
    )
    ViTModel(cfg, add_pooling_layer=False).save_pretrained(path)
    ViTImageProcessor(
        size={"shortest_edge": 224},
        crop_size={"height": 224, "width": 224},
        do_center_crop=True,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        resample=3,
    ).save_pretrained(path)
    return path


# ---------------------------------------------------------------- sections
def forward_speed(backbone, batch: int = 16, iters: int = 6, runtime: str = "torch") -> float:
    import torch

    size = backbone.preprocessing.input_size
    x = torch.randn(batch, 3, size, size)
    if runtime == "onnx":
        from originprobe.backbones.onnxrt import OnnxForward

        f = OnnxForward(backbone)
        f(x, backbone.layer_names)
        t = time.perf_counter()
        for _ in range(iters):
            f(x, backbone.layer_names)
        return batch * iters / (time.perf_counter() - t)
    m = backbone.eval()
    if backbone.prefers_channels_last:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        m(x)
        t = time.perf_counter()
        for _ in range(iters):
            m(x)
    return batch * iters / (time.perf_counter() - t)


def vit_features(data: Path, vit: Path, cache: Path):
    """Train/val/test features of every block of the random ViT-tiny (cached)."""
    from originprobe.features import LayerSpec
    from originprobe.pipeline import RunConfig, prepare

    p = prepare(
        RunConfig(
            data=str(data),
            known=KNOWN,
            backbone="hf:vit-tiny",
            weights=str(vit),
            runtime={"cache": str(cache), "progress": False},
        )
    )
    return p, [LayerSpec((l,)) for l in p.backbone.layer_names]


def roles(p, layer) -> tuple:
    """(train, validation, test) features and labels of a prepared split: a stratified 75/25
    cut of the known-class training images stands for the reference's train/validation."""
    from originprobe.data.splits import stratified_indices

    y = p.table.labels("dev")
    tr, va = stratified_indices(y, (0.75, 0.25), 0)
    X = p.table("dev", layer).astype(np.float64)
    return X[tr], X[va], p.table("test", layer).astype(np.float64), y[tr], y[va], \
        p.table.labels("test")  # fmt: skip


def bench_sweep(data: Path, work: Path, quick: bool) -> float:
    """Returns the scikit-learn loop's seconds (the reference's sweep of one block)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from originprobe.heads import LinearHead
    from originprobe.heads._logistic import balanced_weights, objective
    from originprobe.heads.selection import balanced_accuracy
    from originprobe.metrics import auroc

    vit = make_vit_tiny(work / "vit-tiny")
    p, layers = vit_features(data, vit, work / "cache")
    block = layers[0]  # the reference sweeps C at the first block
    Xtr, Xva, Xte, ytr, yva, yte = roles(p, block)
    known_te = np.isin(yte, KNOWN)
    Cs = [float(c) for c in np.logspace(-6, 5, 13 if quick else 45)]
    mean, scale = Xtr.mean(0), Xtr.std(0)
    scale[scale < 1e-8] = 1
    Z, Zva, Zte = (Xtr - mean) / scale, (Xva - mean) / scale, (Xte - mean) / scale

    def figures(proba_val, pred_val, proba_test):
        return {
            "val_balanced_accuracy": balanced_accuracy(yva, pred_val),
            "val_macro_auroc": float(
                roc_auc_score(yva, proba_val, multi_class="ovr", labels=sorted(set(ytr)))
            ),
            "test_open_set_auroc_msp": auroc(proba_test.max(1), known_te),
        }

    t = time.perf_counter()
    sk_rows = []
    for C in Cs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = LogisticRegression(C=C, tol=1e-12, max_iter=1000, class_weight="balanced")
            clf.fit(Z, ytr)
        sk_rows.append(
            (clf, figures(clf.predict_proba(Zva), clf.predict(Zva), clf.predict_proba(Zte)))
        )
    t_sk = time.perf_counter() - t
    t = time.perf_counter()
    heads = LinearHead(tol=1e-12, max_iter=1000).fit_grid([Xtr], ytr, [{"C": C} for C in Cs])[0]
    t_ours = time.perf_counter() - t
    ours = [figures(h.predict_proba(Xva), h.predict(Xva), h.predict_proba(Xte)) for h in heads]
    pick_sk = int(np.argmax([f["val_balanced_accuracy"] for _, f in sk_rows]))
    pick_ours = int(np.argmax([f["val_balanced_accuracy"] for f in ours]))
    classes, y_idx = LinearHead._labels(ytr)
    sw = balanced_weights(y_idx, len(classes))
    obj_sk = [
        objective(
            Z,
            y_idx,
            sw,
            C,
            clf.coef_[[list(clf.classes_).index(c) for c in classes]],
            clf.intercept_[[list(clf.classes_).index(c) for c in classes]],
        )
        for C, (clf, _) in zip(Cs, sk_rows)
    ]
    obj_ours = [h.objective_ for h in heads]
    conv = [clf.n_iter_[0] < 1000 for clf, _ in sk_rows]
    diffs = {
        k: max(abs(o[k] - s[k]) for o, (_, s), c in zip(ours, sk_rows, conv) if c) for k in ours[0]
    }
    emit(
        "sweep",
        {
            "block": str(block),
            "train": len(ytr),
            "val": len(yva),
            "C_values": len(Cs),
            "tol": 1e-12,
            "sklearn_s": round(t_sk, 2),
            "originprobe_s": round(t_ours, 3),
            "speedup": round(t_sk / t_ours, 1),
            "chosen_C": {"sklearn": Cs[pick_sk], "originprobe": Cs[pick_ours]},
            "at_chosen_C": {"sklearn": sk_rows[pick_sk][1], "originprobe": ours[pick_ours]},
            "max_abs_diff_over_C_where_sklearn_converged": diffs,
            "sklearn_hit_max_iter": int(sum(not c for c in conv)),
            "originprobe_converged": int(sum(h.converged_ for h in heads)),
            "objective_ours_minus_sklearn_max": float(max(a - b for a, b in zip(obj_ours, obj_sk))),
        },
    )
    return t_sk


def _reference_extraction_one_block(data: Path, vit: Path, n: int) -> float:
    """The reference pipeline's extraction of one block: every image resized to 224x224,
    ImageNet-normalised, run through the whole model, one block kept (it re-extracts per
    block). Seconds for `n` images."""
    import torch
    from PIL import Image
    from transformers import ViTModel

    model = ViTModel.from_pretrained(vit, add_pooling_layer=False).eval()
    rows = realgen_rows(data)[:n]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    t = time.perf_counter()
    batch = []
    with torch.inference_mode():
        for i, r in enumerate(rows):
            img = (
                Image.open(data / r["path"])
                .convert("RGB")
                .resize((224, 224), Image.Resampling.BICUBIC)
            )
            x = torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)
            batch.append((x - mean) / std)
            if len(batch) == 32 or i == len(rows) - 1:
                out = model(pixel_values=torch.stack(batch), output_hidden_states=True)
                _ = out.hidden_states[1][:, 0].numpy().copy()
                batch = []
    return time.perf_counter() - t


def bench_vit(data: Path, work: Path, quick: bool, sweep_s: float | None) -> None:
    vit = make_vit_tiny(work / "vit-tiny")
    cache = work / "vit-cold-cache"
    shutil.rmtree(cache, ignore_errors=True)
    out = work / "vit-run"
    shutil.rmtree(out, ignore_errors=True)
    wall, rss, _ = run_measured(
        cli(
            "evaluate",
            "--data",
            str(data),
            "--known",
            ",".join(KNOWN),
            "--backbone",
            "hf:vit-tiny",
            "--weights",
            str(vit),
            "--layers",
            "all",
            "--cache",
            str(cache),
            "--out",
            str(out),
            "--quiet",
        )
    )
    res = json.loads((out / "results.json").read_text())
    n = res["timing"]["extracted"]
    ref_block = _reference_extraction_one_block(data, vit, 256 if quick else n)
    ref_block *= n / (256 if quick else n)
    row = {
        "images": n,
        "layers": 12,
        "wall_s": round(wall, 1),
        "extraction_s": res["timing"]["extract_s"],
        "selection_s": res["timing"]["selection_s"],
        "selection_fits": res.get("selection_fits"),
        "peak_rss_mb": round(rss),
        "selected": res["selected"]["layer"],
        "reference_extraction_per_block_s": round(ref_block, 1),
    }
    if sweep_s is not None:
        published = 12 * ref_block + sweep_s
        as_paper = 12 * (ref_block + sweep_s)
        row |= {
            "reference_sweep_one_block_s": round(sweep_s, 1),
            "reference_projected_as_published_s": round(published),
            "reference_projected_C_at_every_block_s": round(as_paper),
            "target_s (1/20 of published)": round(published / 20, 1),
            "originprobe_fraction_of_published": round(wall / published, 4),
        }
    emit("vit", row)
    # the same cold run on 2,574 lossless re-crops of realgen (the size the memory goal names:
    # < 1.5 GB peak RSS, wall within 1.5x of one forward pass over the images)
    n_big = 600 if quick else 2574
    man = recrops(data, work / f"recrops-{n_big}", n_big)
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    wall, rss, _ = run_measured(
        cli("evaluate", "--data", str(man), "--known", ",".join(KNOWN), "--backbone",
            "hf:vit-tiny", "--weights", str(vit), "--layers", "all", "--cache", str(cache),
            "--out", str(out), "--quiet")
    )  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    m = res["timing"]["extracted"]
    forward = ref_block / n * m  # one forward pass over the images, the reference's way
    emit("vit", {"images": m, "layers": 12, "wall_s": round(wall, 1),
                 "extraction_s": res["timing"]["extract_s"],
                 "selection_s": res["timing"]["selection_s"], "peak_rss_mb": round(rss),
                 "one_forward_s": round(forward, 1),
                 "wall_over_one_forward": round(wall / forward, 2)})  # fmt: skip


def bench_evaluate(data: Path, work: Path, quick: bool) -> None:
    """A cold-cache evaluate over every layer, for efficientnet-lite0 and for the default
    configuration (a fusion: its pure forward time is the sum of its members')."""
    from originprobe.backbones import DEFAULT_BACKBONE, load_backbone

    for name in dict.fromkeys(("efficientnet-lite0", DEFAULT_BACKBONE)):
        cache = work / "evaluate-cold-cache"
        shutil.rmtree(cache, ignore_errors=True)
        out = work / "evaluate-run"
        shutil.rmtree(out, ignore_errors=True)
        bb = load_backbone(name)
        members = list(getattr(bb, "members", [bb]))
        wall, rss, _ = run_measured(
            cli(
                "evaluate",
                "--data",
                str(data),
                "--known",
                ",".join(KNOWN),
                "--backbone",
                name,
                "--cache",
                str(cache),
                "--out",
                str(out),
                "--quiet",
            )
        )
        res = json.loads((out / "results.json").read_text())
        n = res["timing"]["extracted"]
        for rt in ("torch", "onnx"):
            pure_s = sum(
                n / forward_speed(m, runtime=rt if m.onnx_friendly else "torch") for m in members
            )
            emit(
                "evaluate",
                {
                    "backbone": name,
                    "images": n,
                    "candidates": len(res["candidates"]),
                    "wall_s": round(wall, 1),
                    "extraction_s": res["timing"]["extract_s"],
                    "selection_s": res["timing"]["selection_s"],
                    "peak_rss_mb": round(rss),
                    "pure_forward_runtime": rt,
                    "pure_forward_s": round(pure_s, 1),
                    "wall_over_pure_forward": round(wall / pure_s, 2),
                },
            )


def bench_extraction(data: Path, work: Path, quick: bool) -> None:
    import torch
    from PIL import Image

    from originprobe.backbones import load_backbone
    from originprobe.data import load_dataset
    from originprobe.features import extract_features, open_store
    from originprobe.runtime import Runtime

    n = 256 if quick else 1024
    samples = load_dataset(data).samples[:n]
    bb = load_backbone("efficientnet-lite0")
    for runtime in ("torch", "onnx"):
        before = forward_speed(bb, runtime=runtime)
        with tempfile.TemporaryDirectory() as cache:
            rep = extract_features(
                samples, bb, open_store(cache, bb), None, Runtime(backend=runtime)
            )
        after = forward_speed(bb, runtime=runtime)
        pure = (before + after) / 2
        emit(
            "extraction",
            {
                "runtime": runtime,
                "images": rep.computed,
                "end_to_end_img_s": round(rep.images_per_second, 1),
                "pure_forward_img_s": round(pure, 1),
                "ratio": round(rep.images_per_second / pure, 3),
                "model_waiting_for_images": round(rep.loader_wait_seconds / rep.seconds, 3),
            },
        )
    # where decoding time goes, one thread
    rows = realgen_rows(data)
    pngs = [data / r["path"] for r in rows if r["path"].endswith(".png")][:200]
    jpgs = [data / r["path"] for r in rows if r["path"].endswith(".jpg")][:200]
    pre = bb.preprocessing

    def per_image(fn, files):
        blobs = [f.read_bytes() for f in files]
        t = time.perf_counter()
        for b in blobs:
            fn(b)
        return round((time.perf_counter() - t) / len(blobs) * 1e3, 2)

    def pil(b):
        return Image.open(io.BytesIO(b)).convert("RGB")

    from originprobe.data.images import decode_image

    big = []
    for f in jpgs[:40]:
        buf = io.BytesIO()
        Image.open(f).convert("RGB").resize((2048, 2048), Image.Resampling.BICUBIC).save(
            buf, "JPEG", quality=92
        )
        big.append(buf.getvalue())
    t = time.perf_counter()
    for b in big:
        decode_image(b, draft_size=None)
    full = (time.perf_counter() - t) / len(big) * 1e3
    t = time.perf_counter()
    for b in big:
        decode_image(b, draft_size=pre.draft_size)
    draft = (time.perf_counter() - t) / len(big) * 1e3
    row = {
        "png_decode_ms": per_image(pil, pngs),
        "jpeg_decode_pillow_ms": per_image(pil, jpgs),
        "decode_with_checks_png_ms": per_image(lambda b: decode_image(b), pngs),
        "decode_with_checks_jpeg_ms": per_image(lambda b: decode_image(b), jpgs),
        "resize_crop_to_uint8_ms": per_image(lambda b: pre.to_uint8(pil(b)), pngs)
        - per_image(pil, pngs),
        "jpeg_2048px_full_decode_ms": round(full, 1),
        "jpeg_2048px_draft_decode_ms": round(draft, 1),
    }
    try:
        from torchvision.io import decode_jpeg

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row["jpeg_decode_torchvision_ms"] = per_image(
                lambda b: decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8)), jpgs
            )
    except ImportError:
        row["jpeg_decode_torchvision_ms"] = None
    cl = bb.prefers_channels_last
    bb.prefers_channels_last = False
    row["forward_contiguous_img_s"] = round(forward_speed(bb), 1)
    bb.prefers_channels_last = cl
    row["forward_channels_last_img_s"] = round(forward_speed(bb), 1)
    row["forward_onnxruntime_img_s"] = round(forward_speed(bb, runtime="onnx"), 1)
    emit("extraction", row)


def bench_scaling(data: Path, work: Path, quick: bool) -> None:
    sizes = [500, 1000, 2000, 4000] if quick else [2500, 5000, 10000, 20000]
    for n in sizes:
        manifest = recrops(data, work / "recrops" / str(n), n)
        cache = work / "scaling-cache"
        shutil.rmtree(cache, ignore_errors=True)
        out = work / "scaling-run"
        shutil.rmtree(out, ignore_errors=True)
        wall, rss, _ = run_measured(
            cli(
                "evaluate",
                "--data",
                str(manifest),
                "--known",
                ",".join(KNOWN),
                "--backbone",
                "efficientnet-lite0",
                "--cache",
                str(cache),
                "--out",
                str(out),
                "--quiet",
                "--no-report",
            )
        )
        res = json.loads((out / "results.json").read_text())
        emit(
            "scaling",
            {
                "images": n,
                "wall_s": round(wall, 1),
                "extraction_s": res["timing"]["extract_s"],
                "selection_s": res["timing"]["selection_s"],
                "s_per_1000_images": round(wall / n * 1000, 1),
                "peak_rss_mb": round(rss),
            },
        )
    shutil.rmtree(work / "scaling-cache", ignore_errors=True)
    # selection time against the number of layers (ViT-tiny blocks, features cached)
    from originprobe import Attributor

    vit = make_vit_tiny(work / "vit-tiny")
    p, layers = vit_features(data, vit, work / "cache")
    dev = p.table.rows["dev"]
    for k in (1, 3, 6, 12):
        for search in ("all", "forward"):
            t = time.perf_counter()
            att = Attributor(selection={"layer_search": search}).fit_features(
                {str(l): dev[str(l)] for l in layers[:k]}, p.table.labels("dev")
            )
            emit(
                "scaling",
                {
                    "layers": k,
                    "layer_search": search,
                    "selection_s": round(time.perf_counter() - t, 2),
                    "fits": att.selection_summary_["fits"],
                    "selected": str(att.layer_),
                },
            )


def bench_gpu(data: Path, work: Path, quick: bool) -> None:
    import torch

    if not torch.cuda.is_available():
        emit("gpu", {"skipped": "no GPU on this machine"})
        return
    from PIL import Image

    from originprobe.backbones import load_backbone
    from originprobe.data import Sample
    from originprobe.features import extract_features, open_store

    jpg_dir = work / "jpeg"
    jpg_dir.mkdir(exist_ok=True)
    rows = realgen_rows(data)
    samples = []
    for i in range(4096 if not quick else 1024):
        r = rows[i % len(rows)]
        f = jpg_dir / f"{i:05d}.jpg"
        if not f.exists():
            Image.open(data / r["path"]).convert("RGB").rotate(i % 4 * 90).save(
                f, "JPEG", quality=90
            )
        samples.append(Sample(path=f, label=r["label"]))
    bb = load_backbone("clip-vit-b16", weights="random")
    from originprobe.runtime import Runtime

    with tempfile.TemporaryDirectory() as cache:
        rt = Runtime(batch_size=256, workers=min(16, os.cpu_count() or 4))
        rep = extract_features(samples, bb, open_store(cache, bb), None, rt)
    emit(
        "gpu",
        {
            "device": torch.cuda.get_device_name(),
            "images": rep.computed,
            "img_s": round(rep.images_per_second, 1),
            "forward_waiting_for_images": round(rep.loader_wait_seconds / rep.seconds, 3),
        },
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "realgen"))
    ap.add_argument("--work", default=str(REPO / ".cache" / "bench"))
    ap.add_argument("--only", help=f"comma-separated sections of {', '.join(SECTIONS)}")
    ap.add_argument("--quick", action="store_true", help="smaller sizes")
    a = ap.parse_args()
    data, work = Path(a.data), Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    only = a.only.split(",") if a.only else list(SECTIONS)
    sweep_s = bench_sweep(data, work, a.quick) if "sweep" in only else None
    if "vit" in only:
        bench_vit(data, work, a.quick, sweep_s)
    for name, fn in (
        ("evaluate", bench_evaluate),
        ("extraction", bench_extraction),
        ("scaling", bench_scaling),
        ("gpu", bench_gpu),
    ):
        if name in only:
            fn(data, work, a.quick)
    if "serve" in only:
        import serve_load  # benchmarks/serve_load.py, beside this script

        serve_load.main(data, work, a.quick)
    if "ray" in only:
        import ray_bench  # benchmarks/ray_bench.py

        ray_bench.main(data, work, a.quick)
    if "provenance" in only:
        import provenance_bench  # benchmarks/provenance_bench.py

        provenance_bench.main(data, work, a.quick)
    if "selection" in only:
        import selection_bench  # benchmarks/selection_bench.py

        selection_bench.main(work, a.quick)
    if "discovery" in only:
        import discovery_bench  # benchmarks/discovery_bench.py

        discovery_bench.main(work, a.quick)
    if "training" in only:
        import training_bench  # benchmarks/training_bench.py

        training_bench.main(data, work, a.quick)


if __name__ == "__main__":
    main()
