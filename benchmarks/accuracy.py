"""The configuration study behind originprobe's defaults (README, "Which configuration").

Runs `evaluate` on the 5-split `realgen` protocol for each configuration (backbone(s), crop mode,
head, score) and prints one table: the known-only validation figure that chooses the default
(mean validation balanced accuracy of the selected layer), and the test figures (mean of 5 splits)
that are shown, never used to choose. Extraction images/s are measured per backbone on a cold
cache (first time it is seen); a fusion costs the sum of its members' times.

    .venv/bin/python benchmarks/accuracy.py --root ../shared/data/realgen --out runs/study

With `--jpeg-align 90` every configuration is also evaluated on the JPEG-aligned twin (learned
networks are trained again on it) and the table gains its columns; the training time per split
(raw + twin, 2 CPU cores unless told otherwise) is shown for learned configurations.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

CONFIGS = [
    # (backbone, head, score)
    ("efficientnet-lite0", "linear", None),
    ("efficientnet-lite0@native", "linear", None),
    ("forensic", "linear", None),
    ("efficientnet-lite0+forensic", "linear", None),
    ("efficientnet-lite0+efficientnet-lite0@native", "linear", None),
    ("efficientnet-lite0+efficientnet-lite0@native", "reference", None),
    ("efficientnet-lite0+efficientnet-lite0@native", "linear", "energy"),
    ("efficientnet-lite0+efficientnet-lite0@native+forensic", "linear", None),
    ("efficientnet-lite2", "linear", None),
    ("efficientnet-lite2+efficientnet-lite2@native", "linear", None),
    ("learned:forensic-cnn", "linear", None),
    ("learned:forensic-cnn+efficientnet-lite2", "linear", None),
    ("learned:forensic-cnn+efficientnet-lite2", "reference", None),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="../shared/data/realgen")
    ap.add_argument("--out", default="runs/study")
    ap.add_argument("--only", type=int, nargs="*", help="row numbers to run (0-based)")
    ap.add_argument("--jpeg-align", type=int, default=None, metavar="QUALITY")
    args = ap.parse_args()
    from originprobe.backbones.fusion import split_fusion
    from originprobe.pipeline.multirun import evaluate_many
    from originprobe.pipeline.prepare import RunConfig

    out = Path(args.out)
    speed: dict[str, float] = {}
    speed_file = out / "speed.json"
    if speed_file.is_file():
        speed = json.loads(speed_file.read_text())
    rows = []
    for i, (bb, head, score) in enumerate(CONFIGS):
        if args.only is not None and i not in args.only:
            continue
        name = f"{i:02d}-{bb.replace('+', '_')}-{head}-{score or 'default'}"
        cfg = RunConfig(
            data=None,
            known=None,
            protocol="realgen",
            root=args.root,
            backbone=bb,
            head=head,
            score=score,
            cache=str(out / "cache"),
            progress=False,
            jpeg_align=args.jpeg_align,
        )
        t = time.perf_counter()
        summary = evaluate_many(cfg, out / name)
        first = json.loads((out / name / "split1" / "results.json").read_text())
        timing = first["timing"]
        if timing["extracted"] and "+" not in bb:
            speed[bb] = timing["images_per_s"]
            speed_file.write_text(json.dumps(speed))
        members = split_fusion(bb)
        ips = (
            (1.0 / sum(1.0 / speed[m] for m in members))
            if all(m in speed for m in members)
            else None
        )
        m = summary["mean"]
        a = (summary.get("jpeg_aligned") or {}).get("mean") or {}
        train_s = [r["training_s"] for r in summary["runs"] if r.get("training_s")]
        rows.append(
            [
                bb,
                head,
                summary["config"].get("score") or "default",
                m["val bal. acc."],
                m["accuracy"],
                m["AUROC"],
                m["OSCR"],
                ips,
                time.perf_counter() - t,
                a.get("accuracy"),
                a.get("AUROC"),
                a.get("OSCR"),
                sum(train_s) / len(train_s) if train_s else None,
            ]
        )
        print(
            json.dumps(
                dict(
                    zip(
                        [
                            "backbone",
                            "head",
                            "score",
                            "val",
                            "acc",
                            "auroc",
                            "oscr",
                            "img_s",
                            "wall_s",
                            "jpeg_acc",
                            "jpeg_auroc",
                            "jpeg_oscr",
                            "train_s_per_split",
                        ],
                        rows[-1],
                    )
                )
            ),
            flush=True,
        )
    head = "| backbone(s) | head | score | val bal. acc. | acc | AUROC | OSCR | extraction img/s |"
    if args.jpeg_align:
        head += f" JPEG-{args.jpeg_align} acc | AUROC | OSCR | training s/split |"
    print("\n" + head)
    print("|" + "---|" * head.count("|", 1))
    for r in rows:
        ips = f"{r[7]:.1f}" if r[7] else "?"
        line = (
            f"| `{r[0]}` | {r[1]} | {r[2]} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.3f} | {r[6]:.3f} "
            f"| {ips} |"
        )
        if args.jpeg_align:
            line += "".join(f" {v:.3f} |" if v is not None else " – |" for v in r[9:12])
            line += f" {r[12]:.0f} |" if r[12] else " – |"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
