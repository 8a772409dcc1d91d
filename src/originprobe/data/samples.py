"""Labelled image collections: what a dataset is, read from disk in the three layouts the field uses.

A `Dataset` is a list of `Sample`s (file path, label, content hash, extra columns). It never opens
the images themselves beyond hashing their bytes; decoding belongs to `originprobe.data.images`.

Layouts:
- folder tree `<root>/<label>/**/<image>`;
- CSV manifest with at least `path,label` (paths relative to the manifest, extra columns kept);
- annotation text files `path<TAB>integer_label` (GenImage / OSMA open-set splits) plus the list of
  class names, one per line, in label-index order.

Files named by a manifest or annotation file that are missing are not dropped silently: they are
returned in `Dataset.problems` with the reason, like undecodable images later on. Images are
recognised by content (`hash_samples` sniffs the first bytes while hashing), never by extension;
what is not an image is listed as skipped. Hidden files and folders (names starting with ".") are
not walked.

Where files may come from: a path written in a manifest or annotation file must resolve, symbolic
links followed, inside the dataset root (the manifest's folder, or `root`); anything else is skipped
with the reason, unless the caller passes `allow_outside_root=True` (`--allow-outside-root`). A
folder tree the user points at is the user's own arrangement: its symbolic links are followed
wherever they lead (a Hugging Face hub cache, DVC and git-annex link every file into a blob store),
and the resolved path is kept in `Sample.extra["resolved_path"]`. Annotation files that originprobe
itself wrote from such a tree are read the same way (`follow_links=True`).
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OriginprobeError
from .images import SNIFF_BYTES, ImageDecodeError, describe_non_image, open_regular, sniff_format

MANIFEST_NAMES = ("manifest.csv",)
LabelResolver = Callable[[str, int], "str | None"]


class DatasetError(OriginprobeError):
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


def _hash_one(sample: Sample) -> tuple[Sample, Problem | None]:
    """Hash the file's content, reading it once; a file that is not an image is a problem."""
    try:
        with open_regular(sample.path) as f:
            head = f.read(SNIFF_BYTES)
            if sniff_format(head) is None:
                return sample, Problem(str(sample.path), describe_non_image(head))
            h = hashlib.sha256(head)
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        sample.sha256 = h.hexdigest()
        return sample, None
    except ImageDecodeError as exc:
        return sample, Problem(str(sample.path), exc.reason)
    except OSError as exc:
        return sample, Problem(str(sample.path), f"cannot read file: {exc.strerror or exc}")


def hash_samples(samples: Sequence[Sample], workers: int = 8) -> tuple[list[Sample], list[Problem]]:
    """Compute every sample's content hash; unreadable files and files that are not images come
    back as problems, not errors. The same content listed under two different labels is
    ambiguous: every copy is dropped, with a problem naming the other label."""
    todo = [s for s in samples if s.sha256 is None]
    problems: list[Problem] = []
    if todo:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _, problem in pool.map(_hash_one, todo):
                if problem is not None:
                    problems.append(problem)
    bad = {p.path for p in problems}
    ok = [s for s in samples if str(s.path) not in bad and s.sha256 is not None]
    labels: dict[str, dict[str, str]] = {}
    for s in ok:
        if s.label:
            labels.setdefault(s.sha256, {}).setdefault(s.label, str(s.path))
    conflicts = {h for h, by in labels.items() if len(by) > 1}
    if conflicts:
        for s in ok:
            if s.sha256 in conflicts:
                others = [f"{l!r} ({p})" for l, p in labels[s.sha256].items() if l != s.label]
                problems.append(
                    Problem(
                        str(s.path),
                        f"the same image content is also labelled "
                        f"{', '.join(others)}; both dropped",
                    )
                )
        ok = [s for s in ok if s.sha256 not in conflicts]
    return ok, problems


def walk_files(root: Path, problems: list[Problem] | None = None) -> Iterable[Path]:
    """Every non-hidden file under `root`, sorted, symbolic links followed (a linked folder is
    walked once, even in a cycle); images are told apart later, by content. Broken links are
    skipped into `problems`."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # a link cycle, or the same folder linked twice
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = Path(dirpath) / name
            if p.is_symlink() and not p.exists():
                if problems is not None:
                    problems.append(Problem(str(p), "broken symbolic link (its target is missing)"))
                continue
            yield p


def skipped_summary(problems: Sequence[Problem]) -> str:
    """'N file(s) skipped: reason (n), ...' for an error message; '' when nothing was skipped."""
    if not problems:
        return ""
    why = Counter(p.reason for p in problems)
    return (
        f"{len(problems)} file(s) skipped: "
        + "; ".join(f"{r} ({n})" for r, n in why.most_common(3))
        + (f"; {len(why) - 3} other reason(s)" if len(why) > 3 else "")
    )


def _resolved_extra(path: Path) -> dict[str, str]:
    return {"resolved_path": str(path.resolve())} if path.is_symlink() else {}


def _inside(path: Path, base: Path, allow: bool, follow_links: bool = False) -> str | None:
    """Why `path` may not be read from a dataset rooted at `base` (None when it may). With
    `follow_links` only the path as written must stay inside (the links are the tree's own)."""
    if allow:
        return None
    if follow_links:
        if Path(os.path.normpath(base / path)).is_relative_to(Path(os.path.normpath(base))):
            return None
        return f"path leads outside the dataset root {base}"
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):
        return "path cannot be resolved (symbolic-link loop?)"
    if resolved.is_relative_to(base.resolve()):
        return None
    how = "symbolic link leads" if path.is_symlink() else "path resolves"
    return f"{how} outside the dataset root {base} (pass --allow-outside-root to read it)"


def load_folder(root: str | Path) -> Dataset:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    samples, problems = [], []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in walk_files(label_dir, problems):
            samples.append(Sample(path=f, label=label_dir.name, extra=_resolved_extra(f)))
    if not samples:
        skipped = skipped_summary(problems)
        raise DatasetError(
            f"{root}: no files found under <root>/<label>/" + (f" ({skipped})" if skipped else "")
        )
    return Dataset(samples=samples, source=str(root), problems=problems)


def load_manifest(manifest: str | Path, allow_outside_root: bool = False) -> Dataset:
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
                why = _inside(path, base, allow_outside_root)
                if why:
                    problems.append(Problem(f"{manifest}:{lineno}", f"{row['path']}: {why}"))
                    continue
                extra = {
                    k: v for k, v in row.items() if k not in ("path", "label") and k is not None
                }
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
    annotation_file: str | Path,
    class_names: Sequence[str] | LabelResolver,
    root: str | Path | None = None,
    allow_outside_root: bool = False,
    follow_links: bool = False,
) -> Dataset:
    """Read `path<TAB>integer_label` lines; paths resolve against `root` (default: the file's folder).

    `class_names` maps the integer label to a name: a list indexed by it, or a function
    `(relative_path, index) -> name or None` (None: the line is reported as a problem).
    `follow_links`: the file lists a folder tree originprobe walked itself; its links are followed.
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
            what = (
                f"an index into the {n_names} class names"
                if n_names is not None
                else "a class of this protocol"
            )
            problems.append(Problem(f"{annotation_file}:{lineno}", f"label {idx!r} is not {what}"))
            continue
        p = Path(rel)
        path = p if p.is_absolute() else base / p
        why = _inside(path, base, allow_outside_root, follow_links)
        if why:
            problems.append(Problem(f"{annotation_file}:{lineno}", f"{rel}: {why}"))
            continue
        samples.append(
            Sample(path=path, label=label, extra={"label_index": idx, **_resolved_extra(path)})
        )
    return Dataset(samples=samples, source=str(annotation_file), problems=problems)


def load_dataset(
    spec: str | Path,
    class_names: str | Path | None = None,
    root: str | Path | None = None,
    allow_outside_root: bool = False,
) -> Dataset:
    """Open a dataset from a folder tree, a manifest CSV (or a folder holding `manifest.csv`),
    or an annotation file (with `class_names`)."""
    p = Path(spec)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or directory")
    if p.is_dir():
        for name in MANIFEST_NAMES:
            if (p / name).is_file():
                return load_manifest(p / name, allow_outside_root)
        return load_folder(p)
    if p.suffix.lower() == ".csv":
        return load_manifest(p, allow_outside_root)
    if class_names is None:
        raise DatasetError(
            f"{p}: an annotation file needs --class-names (one class name per line, in index order)"
        )
    return load_annotations(
        p, read_class_names(class_names), root=root, allow_outside_root=allow_outside_root
    )


__all__ = [
    "Dataset",
    "DatasetError",
    "ImageDecodeError",
    "Problem",
    "Sample",
    "hash_samples",
    "load_annotations",
    "load_dataset",
    "load_folder",
    "load_manifest",
    "read_class_names",
    "skipped_summary",
    "walk_files",
]


def without_failed(samples: Sequence[Sample], problems: Iterable[Problem]) -> list[Sample]:
    """The samples whose file is not among the problems' (files that could not be read)."""
    failed = {str(p.path) for p in problems}
    return [s for s in samples if str(s.path) not in failed]
