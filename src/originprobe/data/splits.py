"""Open-set splits: which samples train the head, which select it, which test it.

The rules a split must obey, enforced by `OpenSetSplit.check()` and so by every pipeline that uses
one (the reference code's faults are exactly these):
- train and validation hold known classes only; unknown classes appear in test only;
- no image (by content hash) is in more than one of train, validation and test;
- validation is never the test set.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import OriginprobeError
from .samples import Sample


class SplitLeakError(OriginprobeError):
    """A split that would let unknown or test samples into training or selection."""


class SplitWarning(UserWarning):
    """Something about a split that the user must see but that does not stop the run."""


@dataclass
class OpenSetSplit:
    known_classes: list[str]
    unknown_classes: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]

    def check(self) -> "OpenSetSplit":
        known = set(self.known_classes)
        if not known:
            raise SplitLeakError("no known classes")
        overlap = known & set(self.unknown_classes)
        if overlap:
            raise SplitLeakError(f"classes both known and unknown: {sorted(overlap)}")
        for role, samples in (("train", self.train), ("validation", self.val)):
            bad = sorted({s.label for s in samples} - known)
            if bad:
                raise SplitLeakError(f"{role} set contains non-known classes {bad}")
        hashes = {}
        for role, samples in (("train", self.train), ("validation", self.val), ("test", self.test)):
            for s in samples:
                if s.sha256 is None:
                    raise SplitLeakError(f"{s.path}: sample has no content hash")
                prev = hashes.setdefault(s.sha256, role)
                if prev != role:
                    raise SplitLeakError(f"{s.path}: the same image is in both {prev} and {role}")
        missing = sorted(known - {s.label for s in self.train})
        if missing:
            raise SplitLeakError(f"known classes without training samples: {missing}")
        return self

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for role, samples in (("train", self.train), ("val", self.val), ("test", self.test)):
            c: dict[str, int] = defaultdict(int)
            for s in samples:
                c[s.label] += 1
            out[role] = dict(sorted(c.items()))
        return out


def dedupe(samples: Sequence[Sample]) -> tuple[list[Sample], int]:
    """Keep the first sample of each content hash, so one image never sits in two splits."""
    seen, out = set(), []
    for s in samples:
        if s.sha256 in seen:
            continue
        seen.add(s.sha256)
        out.append(s)
    return out, len(samples) - len(out)


PART_NAMES = {2: ("train", "validation"), 3: ("train", "validation", "test")}


def stratified_indices(
    labels: Sequence[str], fractions: Sequence[float], seed: int
) -> list[np.ndarray]:
    """Indices of `labels` split per class by `fractions` (seeded, in the given order). Every
    part with a positive fraction gets ≥1 sample of a class when the class is large enough; a
    class too small for that is reported with a `SplitWarning`."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype=object)
    fr = np.asarray(fractions, dtype=float) / float(sum(fractions))
    names = PART_NAMES.get(len(fr)) or tuple(f"part {i}" for i in range(len(fr)))
    parts: list[list[int]] = [[] for _ in fr]
    for label in sorted(set(labels.tolist())):
        items = np.flatnonzero(labels == label)
        n = len(items)
        order = rng.permutation(n)
        sizes = np.floor(fr * n).astype(int)
        wanted = fr > 0
        if n >= int(wanted.sum()):
            sizes[wanted] = np.maximum(sizes[wanted], 1)
        sizes[0] = n - sizes[1:].sum()  # the rounding remainder goes to the first part
        empty = [names[i] for i in range(1, len(fr)) if wanted[i] and sizes[i] == 0]
        if empty:
            warnings.warn(
                f"class {label!r} has only {n} image(s): none left for {' or '.join(empty)}",
                SplitWarning,
                stacklevel=3,
            )
        start = 0
        for i, size in enumerate(sizes):
            parts[i].extend(items[order[start : start + size]].tolist())
            start += size
    return [np.array(sorted(p), dtype=np.int64) for p in parts]


def stratified_split(
    samples: Sequence[Sample], fractions: Sequence[float], seed: int
) -> list[list[Sample]]:
    """`stratified_indices` over samples in a canonical order (label, content hash, path)."""
    ordered = sorted(samples, key=lambda s: (s.label, s.sha256 or "", str(s.path)))
    return [
        [ordered[i] for i in idx]
        for idx in stratified_indices([s.label for s in ordered], fractions, seed)
    ]


def make_split(
    samples: Sequence[Sample],
    known: Sequence[str],
    unknown: Sequence[str] | None = None,
    test_samples: Sequence[Sample] | None = None,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> OpenSetSplit:
    """Build a checked open-set split.

    Without `test_samples`: known-class samples are split train/val/test by `fractions`
    (stratified, seeded) and unknown-class samples all go to test.
    With `test_samples`: train/val come from the known-class part of `samples`, test is
    `test_samples` (minus any image also used for training or validation).
    `unknown` defaults to every label of the test data that is not known; labels that are neither
    known nor unknown are left out.
    """
    known = list(dict.fromkeys(known))
    samples, _ = dedupe(samples)
    if unknown:
        nowhere = sorted(set(unknown) - {s.label for s in list(samples) + list(test_samples or [])})
        if nowhere:
            raise SplitLeakError(f"unknown class(es) {nowhere} have no images in the data")
    absent = sorted(set(known) - {s.label for s in samples})
    if absent:
        raise SplitLeakError(f"known classes not present in the training data: {absent}")
    if test_samples is not None:
        if unknown is None:
            unknown = sorted({s.label for s in test_samples} - set(known))
        return split_from_roles(
            samples, None, test_samples, known, unknown, seed=seed, fractions=fractions[:2]
        )
    if unknown is None:
        unknown = sorted({s.label for s in samples} - set(known))
    known_part = [s for s in samples if s.label in set(known)]
    train, val, test = stratified_split(known_part, fractions, seed)
    test = test + [s for s in samples if s.label in set(unknown)]
    return OpenSetSplit(list(known), list(unknown), train, val, test).check()


def split_from_roles(
    train: Sequence[Sample],
    val: Sequence[Sample] | None,
    test: Sequence[Sample],
    known: Sequence[str],
    unknown: Sequence[str],
    seed: int = 0,
    fractions: tuple[float, float] = (0.6, 0.2),
) -> OpenSetSplit:
    """A checked split from files that already say which samples train, validate and test
    (a published protocol). Without `val`, validation is carved from `train` (stratified, seeded)
    so that the test set never selects anything. Test samples that are also used for training or
    validation, or whose label is neither known nor unknown, are left out of test."""
    known = list(dict.fromkeys(known))
    train = [s for s in dedupe(train)[0] if s.label in set(known)]
    if val is None:
        train, val = stratified_split(train, fractions, seed)
    else:
        used = {s.sha256 for s in train}
        val = [s for s in dedupe(val)[0] if s.label in set(known) and s.sha256 not in used]
    used = {s.sha256 for s in train} | {s.sha256 for s in val}
    test = [
        s for s in dedupe(test)[0] if s.label in set(known) | set(unknown) and s.sha256 not in used
    ]
    return OpenSetSplit(list(known), list(unknown), train, val, test).check()


def per_class_subset(y: np.ndarray, n: int, rng: np.random.Generator, classes=None) -> np.ndarray:
    """Sorted indices of at most `n` random samples of each class (in `classes` order, default
    the sorted labels): capped references, low-data subsets."""
    classes = np.unique(y) if classes is None else classes
    keep = [rng.permutation(np.flatnonzero(y == c))[:n] for c in classes]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def stratified_subsample(y: np.ndarray, limit: int, seed: int) -> np.ndarray | None:
    """Sorted row indices of a stratified, seeded subsample of at most `limit` rows (every class
    kept in proportion, at least one row each), or None when every row fits."""
    if len(y) <= limit:
        return None
    rng = np.random.default_rng(seed)
    keep = []
    for c in sorted(set(y.tolist())):
        rows = np.flatnonzero(y == c)
        n = max(1, int(round(limit * len(rows) / len(y))))
        keep.append(rng.permutation(rows)[:n])
    return np.sort(np.concatenate(keep))
