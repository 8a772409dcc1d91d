"""`make bench` section `ray`: extraction on Ray vs in one local process, on this machine.

Both run `originprobe extract` over the same realgen images into fresh caches, with the default
backbone and every layer. Ray runs on a private local cluster sized to this machine's CPUs (what
is measured is the engine's overhead; on one machine a ratio near 1 is the best possible). Figures:
wall time of the command (Ray's includes starting the cluster and its actors) and images/s.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _emit(row: dict) -> None:
    print(json.dumps({"section": "ray", **row}), flush=True)


def _run(args: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "originprobe", *args], capture_output=True, text=True, env=None
    )
    if r.returncode != 0:
        raise RuntimeError(r.stdout[-2000:] + r.stderr[-2000:])
    return time.perf_counter() - t, r.stdout + r.stderr


def main(data: Path, work: Path, quick: bool = False) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        _emit({"skipped": "ray is not installed (pip install 'originprobe[ray]')"})
        return
    n = 200 if quick else 800
    import csv

    rows = list(csv.DictReader(open(data / "manifest.csv", newline="")))[:n]
    sub = work / "ray-subset"
    sub.mkdir(parents=True, exist_ok=True)
    with open(sub / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label"])
        w.writeheader()
        for r in rows:
            dst = sub / r["path"]
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(data / r["path"], dst)
            w.writerow({"path": r["path"], "label": r["label"]})
    figures = {}
    for engine in ("local", "ray"):
        cache = Path(tempfile.mkdtemp(prefix=f"bench-{engine}-", dir=work))
        try:
            wall, out = _run(
                [
                    "extract",
                    str(sub / "manifest.csv"),
                    "--cache",
                    str(cache),
                    "--quiet",
                    "--engine",
                    engine,
                ]
            )
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        m = re.search(r"([\d.]+) img/s", out)
        figures[engine] = {
            "wall_s": round(wall, 1),
            "img_s": float(m.group(1)) if m else None,
            "img_s_wall": round(n / wall, 1),
        }
    _emit(
        {
            "images": n,
            "local": figures["local"],
            "ray": figures["ray"],
            "ray_over_local_img_s": round(
                figures["ray"]["img_s_wall"] / figures["local"]["img_s_wall"], 3
            ),
        }
    )


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared" / "data" / "realgen",
        root / ".cache" / "bench",
        "--quick" in sys.argv,
    )
