"""Which backbone features a head reads: one layer, or several concatenated ("stage2+stage5").

A `LayerSpec` is parsed once from text and carried as a value everywhere after that; no other
module splits "a+b" strings. `parse_layer_list` reads the command-line form ("all", "a,b", "a+b,c")
against the layers a backbone (or a fusion of backbones) can emit.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError


@dataclass(frozen=True, order=True)
class LayerSpec:
    parts: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.parts or any(not p or "+" in p or "," in p for p in self.parts):
            raise ConfigError(f"invalid layer spec {self.parts!r}")
        if len(set(self.parts)) != len(self.parts):
            raise ConfigError(f"layer spec {'+'.join(self.parts)!r} names a layer twice")

    @classmethod
    def parse(cls, text: "str | LayerSpec") -> "LayerSpec":
        if isinstance(text, LayerSpec):
            return text
        parts = tuple(p.strip() for p in str(text).split("+"))
        if not all(parts):
            raise ConfigError(f"invalid layer spec {text!r}: empty layer name")
        return cls(parts)

    def with_layer(self, layer: str, order: Sequence[str]) -> "LayerSpec":
        """This spec plus `layer`, parts kept in the backbone's layer order."""
        return LayerSpec(tuple(sorted((*self.parts, layer), key=list(order).index)))

    def __str__(self) -> str:
        return "+".join(self.parts)

    def __len__(self) -> int:
        return len(self.parts)


def parse_layer_list(
    spec: "str | Sequence[str] | None", available: Sequence[str], owner: str = "the backbone"
) -> list[LayerSpec]:
    """ "all"/None → every available layer; "a,b+c" → [a, b+c]. Unknown or empty lists are errors."""
    if spec is None or spec == "all" or list(spec) == ["all"]:
        if not available:
            raise ConfigError(f"{owner} emits no layers")
        return [LayerSpec((l,)) for l in available]
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [str(s).strip() for s in items if str(s).strip()]
    if not items:
        raise ConfigError(
            f"layer list {spec!r} names no layer; use 'all' or names such as "
            f"{', '.join(list(available)[:3])}"
        )
    specs = [LayerSpec.parse(s) for s in items]
    bad = sorted({p for s in specs for p in s.parts} - set(available))
    if bad:
        raise ConfigError(
            f"{owner} has no layer(s) {', '.join(bad)}; it has {', '.join(available)}"
        )
    return list(dict.fromkeys(specs))


def base_layers(specs: Iterable[LayerSpec]) -> list[str]:
    """Every single layer the specs read, first-seen order."""
    return list(dict.fromkeys(p for s in specs for p in s.parts))


class LayerRows(Mapping):
    """The features of one set of rows, one layer at a time: `rows[layer]` returns a fresh float32
    copy of that layer only, read from `arrays` (in-memory arrays, memory-mapped `.npy` files or
    a store loader) and restricted to `index` when given. Nothing is kept between reads, so a
    layer sweep over `LayerRows` holds at most the layers it is fitting."""

    def __init__(self, arrays: Mapping[str, Any], index: np.ndarray | None = None):
        self.arrays = arrays
        self.index = None if index is None else np.asarray(index, dtype=np.int64)

    def __getitem__(self, layer: str) -> np.ndarray:
        a = self.arrays[layer]
        out = np.asarray(a if self.index is None else a[self.index], dtype=np.float32)
        if out is not a:
            _release_pages(a)
        return out

    def __iter__(self) -> Iterator[str]:
        return iter(self.arrays)

    def __len__(self) -> int:
        return len(self.arrays)

    def rows(self, layer: str) -> int:
        if self.index is not None:
            return len(self.index)
        n = getattr(self.arrays, "n_rows", None)  # a store reader knows it without reading
        return int(n) if n is not None else len(self.arrays[layer])

    def width(self, layer: str) -> int | None:
        """The layer's dims when known without reading it, else None."""
        return layer_width(self.arrays, layer)

    def concat(self, spec: LayerSpec) -> np.ndarray:
        """(n, Σ dims) float32 of the spec's layers, filled part by part (one output copy)."""
        if len(spec.parts) == 1:
            return self[spec.parts[0]]
        widths = [self.width(p) for p in spec.parts]
        if any(w is None for w in widths):
            return np.hstack([self[p] for p in spec.parts])
        out = np.empty((self.rows(spec.parts[0]), sum(widths)), dtype=np.float32)
        col = 0
        for p, w in zip(spec.parts, widths):
            out[:, col : col + w] = self[p]
            col += w
        return out


class StackedRows(Mapping):
    """{layer: the rows of several row sets one after the other}, each layer stacked when it is
    read and never kept (training and validation rows given apart, read as one set)."""

    def __init__(self, parts: Sequence[Mapping[str, Any]]):
        self.parts = list(parts)

    def __getitem__(self, layer: str) -> np.ndarray:
        return np.vstack([LayerRows(p)[layer] for p in self.parts])

    def __iter__(self) -> Iterator[str]:
        return iter(self.parts[0])

    def __len__(self) -> int:
        return len(self.parts[0])

    @property
    def n_rows(self) -> int:
        return sum(LayerRows(p).rows(next(iter(p))) for p in self.parts)

    def width(self, layer: str) -> int | None:
        return layer_width(self.parts[0], layer)


def layer_width(rows: Mapping[str, Any], layer: str) -> int | None:
    """A layer's width without reading its rows: from a reader that knows it (`width`), or the
    shape of an array held in a dict; None when only reading would tell."""
    width = getattr(rows, "width", None)
    if callable(width):
        return width(layer)
    if isinstance(rows, dict) and hasattr(rows.get(layer), "shape"):
        return int(rows[layer].shape[1])
    return None


def _release_pages(a: Any) -> None:
    """Let the kernel take back the pages of a memory-mapped array this process has read (they
    stay in the page cache): reading every layer once must not pile them all up in memory."""
    mapping = getattr(a, "_mmap", None)
    if mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mapping.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass
