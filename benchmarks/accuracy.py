"""The configuration study behind originprobe's defaults (README, "Which configuration").

Runs `evaluate` on the 5-split `realgen` protocol for each configuration and prints one table:
the known-only estimate that the selection chooses by (cross-validated balanced accuracy and,
with each known generator withheld in turn, AUROC, OSCR and the share rejected at the threshold),
the test figures (mean of the 5 splits; shown, never used to choose) including the share of the
unseen generators' images rejected at the model's own threshold, and the cost: extraction
images/s per backbone (cold cache) and selection seconds per split.

    .venv/bin/python benchmarks/accuracy.py --root ../shared/data/realgen --out runs/study
    .venv/bin/python benchmarks/accuracy.py --jpeg-align 90      # also the JPEG-aligned twin
    .venv/bin/python benchmarks/accuracy.py --thresholds          # the target-TPR table

With `--jpeg-align 90` every configuration is also evaluated on the JPEG-aligned twin (every
image recompressed, learned networks trained again on it) and the table gains its columns.
`--thresholds` reads the default configuration's runs (results.json "operating_points"): at
several target TPRs, the share of known images kept and of unseen-generator images rejected, on
test and as the known-only estimate predicts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

CONFIGS = [
    # (name, backbone, other options)
    ("lite2", "efficientnet-lite2", {}),
    ("lite0", "efficientnet-lite0", {}),
    ("lite0+lite2 (default)", "efficientnet-lite0+efficientnet-lite2", {}),
    ("lite0+lite1+lite2", "efficientnet-lite0+efficientnet-lite1+efficientnet-lite2", {}),
    ("lite0+lite2, forward layer search", "efficientnet-lite0+efficientnet-lite2",
     {"selection": {"layer_search": "forward"}}),
    ("lite0+lite2, msp", "efficientnet-lite0+efficientnet-lite2", {"score": "msp"}),
    ("lite0+lite1+lite2+lite0@native+lite2@native (accurate)",
     "efficientnet-lite0+efficientnet-lite1+efficientnet-lite2+efficientnet-lite0@native"
     "+efficientnet-lite2@native", {}),
    ("the same, members compared", "efficientnet-lite0+efficientnet-lite1+efficientnet-lite2"
     "+efficientnet-lite0@native+efficientnet-lite2@native",
     {"selection": {"layer_search": "members"}}),
]  # fmt: skip


def _mean(vals):
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def _f(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def thresholds(run_dir: Path) -> list[list]:
    """Known kept and unseen rejected at several target TPRs (results.json "operating_points":
    thresholds from the same out-of-fold scores), mean of the splits, beside the estimate."""
    rows: dict[float, list] = {}
    for split in sorted(run_dir.glob("split*")):
        res = json.loads((split / "results.json").read_text())
        for op in res["operating_points"]:
            rows.setdefault(op["target_tpr"], []).append(op)
    return [
        [tpr, _mean([o["known_kept"] for o in ops]), _mean([o["unseen_rejected"] for o in ops]),
         _mean([o["estimated_rejected"] for o in ops])]
        for tpr, ops in rows.items()
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="../shared/data/realgen")
    ap.add_argument("--out", default="runs/study")
    ap.add_argument("--only", type=int, nargs="*", help="row numbers to run (0-based)")
    ap.add_argument("--jpeg-align", type=int, default=None, metavar="QUALITY")
    ap.add_argument("--thresholds", action="store_true", help="only the target-TPR table")
    args = ap.parse_args()
    from originprobe.pipeline.multirun import evaluate_many
    from originprobe.pipeline.prepare import RunConfig

    out = Path(args.out)
    if args.thresholds:
        print(
            "| target TPR | known kept (test) | unseen rejected (test) | unseen rejected "
            "(known-only estimate) |\n|---|---|---|---|"
        )
        for tpr, kept, rej, est in thresholds(out / "02"):
            print(f"| {tpr:.2f} | {_f(kept)} | {_f(rej)} | {_f(est)} |")
        return
    speed_file = out / "speed.json"
    speed: dict[str, float] = json.loads(speed_file.read_text()) if speed_file.is_file() else {}
    head = ("| configuration | est. bal. acc. | est. AUROC | est. OSCR | est. rejected | acc | AUROC "
            "| OSCR | unseen rejected | known kept | selection s/split | extraction img/s |")  # fmt: skip
    if args.jpeg_align:
        head += f" JPEG-{args.jpeg_align} acc | AUROC | OSCR | unseen rejected |"
    lines = []
    for i, (name, bb, extra) in enumerate(CONFIGS):
        if args.only is not None and i not in args.only:
            continue
        cfg = RunConfig(protocol="realgen", root=args.root, backbone=bb,
                        runtime={"cache": str(out / "cache"), "progress": False},
                        jpeg_align=args.jpeg_align, **extra)  # fmt: skip
        t = time.perf_counter()
        summary = evaluate_many(cfg, out / f"{i:02d}")
        runs = [json.loads((out / f"{i:02d}" / r["name"] / "results.json").read_text())
                for r in summary["runs"]]  # fmt: skip
        for member in bb.split("+"):
            timing = runs[0]["timing"]
            if timing["extracted"] and "+" not in bb:
                speed[member] = timing["images_per_s"]
        speed_file.write_text(json.dumps(speed))
        ips = (1.0 / sum(1.0 / speed[m] for m in bb.split("+"))
               if all(m in speed for m in bb.split("+")) else None)  # fmt: skip
        m = summary["mean"]
        sel_s = _mean([r["timing"]["selection_s"] for r in runs])
        row = {"configuration": name, **m, "selection_s": sel_s, "img_s": ips,
               "wall_s": round(time.perf_counter() - t, 1)}  # fmt: skip
        cells = [
            m["est. bal. acc."],
            m["est. AUROC"],
            m["est. OSCR"],
            m["est. rejected"],
            m["accuracy"],
            m["AUROC"],
            m["OSCR"],
            m["unseen rejected"],
            m["known accepted"],
        ]
        line = f"| {name} | " + " | ".join(_f(v) for v in cells) + f" | {_f(sel_s, 1)} | "
        line += f"{_f(ips, 1)} |"
        if args.jpeg_align:
            a = (summary.get("jpeg_aligned") or {}).get("mean") or {}
            row["jpeg"] = a
            keys = ("accuracy", "AUROC", "OSCR", "unseen rejected")
            line += "".join(f" {_f(a.get(k))} |" for k in keys)
        print(json.dumps(row), flush=True)
        lines.append(line)
    print("\n" + head + "\n|" + "---|" * head.count("|", 1))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
