"""Labelled image collections: what a dataset is, read from disk in the three layouts the field uses.

A `Dataset` is a list of `Sample`s (file path, label, content hash, extra columns). It never opens
the images themselves beyond hashing their bytes; decoding belongs to `originprobe.data.images`.

Layouts:
- folder tree `<root>/<label>/**/<image>`;
- CSV manifest with at least `path,label` (paths relative to the manifest, extra columns kept);
- annotation text files `path<TAB>integer_label` (GenImage / OSMA open-set splits) plus the list of
  class names, one per line, in label-index order.

Files named by a manifest or annotation file that are missing are not dropped silently: they are
returned in `Dataset.problems` with the reason, like undecodable images later on.
"""
from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .images import ImageDecodeError, is_image_path

MANIFEST_NAMES = ("manifest.csv",)
LabelResolver = Callable[[str, int], "str | None"]


class DatasetError(Exception):
    """A dataset description that cannot be read at all (missing root, bad manifest header...)."""


@dataclass
class Sample:
    path: Path
    label: str
    sha256: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class Problem:
    """A file that was named but cannot be used, and why."""

    path: str
    reason: str


@dataclass
class Dataset:
    samples: list[Sample]
    source: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return sorted({s.label for s in self.samples})

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.label for s in self.samples).items()))

    def missing_files(self) -> list[str]:
        """Files named by the dataset that are not on disk (checked now, nothing is read)."""
        return [str(s.path) for s in self.samples if not os.path.exists(s.path)]

    def __len__(self) -> int:
        return len(self.samples)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _hash_one(sample: Sample) -> tuple[Sample, Problem | None]:
    p = sample.path
    try:
        if p.is_symlink() and not p.exists():
            return sample, Problem(str(p), "broken symbolic link")
        if not p.exists():
            return sample, Problem(str(p), "file not found")
        if p.stat().st_size == 0:
            return sample, Problem(str(p), "empty file (0 bytes)")
        sample.sha256 = file_sha256(p)
        return sample, None
    except PermissionError:
        return sample, Problem(str(p), "permission denied")
    except OSError as exc:
        return sample, Problem(str(p), f"cannot read file: {exc.strerror or exc}")


def hash_samples(samples: Sequence[Sample], workers: int = 8) -> tuple[list[Sample], list[Problem]]:
    """Compute every sample's content hash; unreadable files come back as problems, not errors."""
    todo = [s for s in samples if s.sha256 is None]
    problems: list[Problem] = []
    if todo:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _, problem in pool.map(_hash_one, todo):
                if problem is not None:
                    problems.append(problem)
    bad = {p.path for p in problems}
    return [s for s in samples if str(s.path) not in bad], problems


def walk_images(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if is_image_path(p) or (p.is_symlink() and not p.exists()):
                yield p


def load_folder(root: str | Path) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    samples = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for img in walk_images(label_dir):
            samples.append(Sample(path=img, label=label_dir.name))
    if not samples:
        raise DatasetError(f"{root}: no images found under <root>/<label>/")
    return Dataset(samples=samples, source=str(root))


def load_manifest(manifest: str | Path) -> Dataset:
    manifest = Path(manifest)
    base = manifest.parent
    try:
        with open(manifest, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            missing = {"path", "label"} - set(fields)
            if missing:
                raise DatasetError(
                    f"{manifest}: manifest must have columns path,label; missing {sorted(missing)}"
                )
            samples, problems = [], []
            for lineno, row in enumerate(reader, start=2):
                if not row.get("path") or not row.get("label"):
                    problems.append(Problem(f"{manifest}:{lineno}", "row without path or label"))
                    continue
                p = Path(row["path"])
                path = p if p.is_absolute() else base / p
                extra = {k: v for k, v in row.items() if k not in ("path", "label") and k is not None}
                samples.append(Sample(path=path, label=row["label"].strip(), extra=extra))
    except UnicodeDecodeError:
        raise DatasetError(f"{manifest}: manifest is not UTF-8 text") from None
    except csv.Error as exc:
        raise DatasetError(f"{manifest}: malformed CSV ({exc})") from None
    return Dataset(samples=samples, source=str(manifest), problems=problems)


def read_class_names(path: str | Path) -> list[str]:
    names = [ln.strip() for ln in Path(path).read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DatasetError(f"{path}: class-name list is empty")
    return names


def load_annotations(
    annotation_file: str | Path, class_names: Sequence[str] | LabelResolver,
    root: str | Path | None = None,
) -> Dataset:
    """Read `path<TAB>integer_label` lines; paths resolve against `root` (default: the file's folder).

    `class_names` maps the integer label to a name: a list indexed by it, or a function
    `(relative_path, index) -> name or None` (None: the line is reported as a problem).
    """
    annotation_file = Path(annotation_file)
    base = Path(root) if root is not None else annotation_file.parent
    if callable(class_names):
        resolve, n_names = class_names, None
    else:
        names = list(class_names)
        resolve, n_names = (lambda rel, i: names[i] if 0 <= i < len(names) else None), len(names)
    samples, problems = [], []
    try:
        text = annotation_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{annotation_file}: annotation file not found") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{annotation_file}: not a UTF-8 text file") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 2:
            parts = line.rsplit(None, 1)
        if len(parts) < 2:
            problems.append(Problem(f"{annotation_file}:{lineno}", "expected path<TAB>label"))
            continue
        rel, idx = parts[0].strip(), parts[-1].strip()
        try:
            label = resolve(rel, int(idx))
        except ValueError:
            label = None
        if label is None:
            what = (f"an index into the {n_names} class names" if n_names is not None
                    else "a class of this protocol")
            problems.append(Problem(f"{annotation_file}:{lineno}", f"label {idx!r} is not {what}"))
            continue
        p = Path(rel)
        samples.append(Sample(path=p if p.is_absolute() else base / p, label=label,
                              extra={"label_index": idx}))
    return Dataset(samples=samples, source=str(annotation_file), problems=problems)


def load_dataset(spec: str | Path, class_names: str | Path | None = None,
                 root: str | Path | None = None) -> Dataset:
    """Open a dataset from a folder tree, a manifest CSV (or a folder holding `manifest.csv`),
    or an annotation file (with `class_names`)."""
    p = Path(spec)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or directory")
    if p.is_dir():
        for name in MANIFEST_NAMES:
            if (p / name).is_file():
                return load_manifest(p / name)
        return load_folder(p)
    if p.suffix.lower() == ".csv":
        return load_manifest(p)
    if class_names is None:
        raise DatasetError(
            f"{p}: an annotation file needs --class-names (one class name per line, in index order)"
        )
    return load_annotations(p, read_class_names(class_names), root=root)


__all__ = [
    "Dataset", "DatasetError", "ImageDecodeError", "Problem", "Sample", "file_sha256",
    "hash_samples", "load_annotations", "load_dataset", "load_folder", "load_manifest",
    "read_class_names",
]
