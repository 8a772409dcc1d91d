"""Annotation files for a GenImage protocol, made from the raw GenImage tree.

GenImage is distributed as one folder per generator, each holding (possibly one level down, e.g.
`ADM/imagenet_ai_0508_adm/`) `train/{ai,nature}` and `val/{ai,nature}`. `ai` holds that
generator's images; `nature` holds real ImageNet photos, pooled over every generator folder into
the class `real`.

The files written are the published layout, so that they are read exactly like the official ones:
- `{split}_train/annotations/{split}_train.txt`: known classes, from `train/` folders;
- `{split}_val/annotations/{split}_val.txt`: known classes, from `val/` folders (the test set);
- `{split}_val/annotations/{split}_val_out_all.txt`: unknown classes, from `val/` folders;
- `{split}_meta.json`: seed, caps, counts and the folders used.
Paths are relative to the root. Selection is deterministic: file lists are sorted, then a seeded
permutation per class takes at most the cap. A second call with the same settings rewrites
nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.samples import Problem, skipped_summary, walk_files
from ..fileio import atomic_write_text
from . import ProtocolError

REAL = "real"
DEFAULT_TRAIN_PER_CLASS = 2000
DEFAULT_TEST_PER_CLASS = 500
PARTS = ("train", "val")
KINDS = {"ai": "generator", "nature": REAL}


def _part_dirs(gen_dir: Path, depth: int = 3) -> dict[tuple[str, str], Path]:
    """(part, kind) -> folder, for train/val × ai/nature found within `depth` levels."""
    out: dict[tuple[str, str], Path] = {}
    frontier = [gen_dir]
    for _ in range(depth):
        nxt = []
        for d in frontier:
            for part in PARTS:
                for kind in KINDS:
                    if (d / part / kind).is_dir():
                        out.setdefault((part, kind), d / part / kind)
            nxt += sorted(p for p in d.iterdir() if p.is_dir() and p.name not in PARTS)
        frontier = nxt
    return out


def find_raw_tree(root: Path, classes: list[str]) -> dict[str, dict[tuple[str, str], Path]] | None:
    """Generator folder -> its train/val ai/nature folders; None unless every generator has them."""
    tree = {}
    for gen in classes:
        if gen == REAL:
            continue
        d = root / gen
        if not d.is_dir():
            return None
        dirs = _part_dirs(d)
        if ("train", "ai") not in dirs or ("val", "ai") not in dirs:
            return None
        tree[gen] = dirs
    return tree


def _pick(paths: list[Path], cap: int | None, rng: np.random.Generator) -> list[Path]:
    paths = sorted(paths)
    order = rng.permutation(len(paths))
    if cap is not None:
        order = order[:cap]
    return [paths[i] for i in sorted(order)]


def write_annotations(
    protocol,
    tree: dict,
    root: Path,
    out_dir: Path,
    seed: int = 0,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
) -> dict[str, Path]:
    train_cap = train_per_class or DEFAULT_TRAIN_PER_CLASS
    test_cap = test_per_class or DEFAULT_TEST_PER_CLASS
    split = protocol.split
    files = {
        "train": out_dir / f"{split}_train/annotations/{split}_train.txt",
        "test_known": out_dir / f"{split}_val/annotations/{split}_val.txt",
        "test_unknown": out_dir / f"{split}_val/annotations/{split}_val_out_all.txt",
    }
    meta_path = out_dir / f"{split}_meta.json"
    settings = {
        "protocol": protocol.name,
        "seed": seed,
        "train_per_class": train_cap,
        "test_per_class": test_cap,
        "folders": {
            g: {f"{p}/{k}": str(d.relative_to(root)) for (p, k), d in sorted(dirs.items())}
            for g, dirs in sorted(tree.items())
        },
    }
    if meta_path.is_file() and all(f.is_file() for f in files.values()):
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if old.get("settings") == settings:
            return files

    known = list(protocol.known)
    unknown = protocol.unknown_classes("all")
    skipped: dict[str, Problem] = {}  # the folder tree's links are followed; broken ones not

    def walk(folder: Path) -> list[Path]:
        problems: list[Problem] = []
        files = list(walk_files(folder, problems))
        skipped.update((p.path, p) for p in problems)
        return files

    def images(part: str, gen: str) -> list[Path]:
        if gen == REAL:  # real photos: every generator folder's nature/, pooled
            return [
                p
                for g in sorted(tree)
                for p in (walk(tree[g][(part, "nature")]) if (part, "nature") in tree[g] else [])
            ]
        return walk(tree[gen][(part, "ai")])

    def lines(part: str, classes: list[str], cap: int) -> tuple[str, dict[str, int]]:
        out, counts = [], {}
        for index, cls in enumerate(classes):
            rng = np.random.default_rng([seed, index, PARTS.index(part)])
            chosen = _pick(images(part, cls), cap, rng)
            counts[cls] = len(chosen)
            out += [f"{p.relative_to(root).as_posix()}\t{index}" for p in chosen]
        return "".join(ln + "\n" for ln in out), counts

    train_text, train_counts = lines("train", known, train_cap)
    test_text, test_counts = lines("val", known, test_cap)
    out_text, out_counts = lines("val", unknown, test_cap)
    empty = [c for c, n in {**train_counts, **test_counts, **out_counts}.items() if n == 0]
    if empty:
        why = skipped_summary(list(skipped.values()))
        raise ProtocolError(
            f"{root}: no images found for {sorted(set(empty))} in the raw "
            f"GenImage tree ({{train,val}}/ai, or nature/ for real)" + (f"; {why}" if why else "")
        )
    try:
        for key, text in (
            ("train", train_text),
            ("test_known", test_text),
            ("test_unknown", out_text),
        ):
            atomic_write_text(files[key], text)
        atomic_write_text(
            meta_path,
            json.dumps(
                {
                    "settings": settings,
                    "counts": {
                        "train": train_counts,
                        "test_known": test_counts,
                        "test_unknown": out_counts,
                    },
                },
                indent=2,
            )
            + "\n",
        )
    except OSError as exc:
        raise ProtocolError(
            f"{out_dir}: cannot write the generated annotation files "
            f"({exc.strerror or exc}); choose a writable folder with "
            "--annotations DIR"
        ) from None
    return files
