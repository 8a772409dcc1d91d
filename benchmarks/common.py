"""What the benchmarks share: the known classes, how a figure is printed, how a command is timed,
and the re-cropped realgen images the scaling and provenance sections read."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KNOWN = ["real", "dalle-mini", "latent-diffusion", "glid3-xl", "midjourney-v3"]


def emit(section: str, row: dict) -> None:
    print(json.dumps({"section": section, **row}), flush=True)


def run_measured(
    cmd: list[str], env: dict | None = None, cwd: Path | None = None
) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB of that process, output) of one command."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd
    )
    out = []
    for line in proc.stdout:
        out.append(line)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{''.join(out)[-3000:]}")
    return wall, usage.ru_maxrss / 1024, "".join(out)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "originprobe", *args]


def realgen_rows(data: Path) -> list[dict]:
    with open(data / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def recrops(data: Path, out: Path, n: int, size: int = 200) -> Path:
    """A manifest of `n` distinct images: lossless re-crops of realgen at seeded offsets."""
    from PIL import Image

    manifest = out / "manifest.csv"
    if manifest.is_file() and sum(1 for _ in open(manifest)) - 1 == n:
        return manifest
    rows = realgen_rows(data)
    rng = np.random.default_rng(0)
    rows = [rows[i] for i in rng.permutation(len(rows))]  # every class in every size
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(n):
        r = rows[i % len(rows)]
        img = Image.open(data / r["path"]).convert("RGB")
        w, h = img.size
        cw, ch = min(size, w), min(size, h)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        name = f"{r['label']}/{i:06d}.png"
        (out / r["label"]).mkdir(exist_ok=True)
        img.crop((x, y, x + cw, y + ch)).save(out / name, "PNG", compress_level=1)
        written.append({"path": name, "label": r["label"]})
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "label"])
        w.writeheader()
        w.writerows(written)
    return manifest
