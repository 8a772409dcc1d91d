"""Published open-set benchmark protocols, shipped as data: which classes are known, which unknown,
and which annotation files hold train, validation and test.

Each family is one JSON file next to this module (`genimage.json`, `osma.json`,
`diffusionforensics.json`). A protocol name is `family:split` (`genimage:split1`) or the family
alone when it has a single split (`diffusionforensics`).

A family either names annotation files per role, or (`"data"`) one labelled dataset under
`--root` (a manifest or a folder tree) from which known classes are split train/validation/test
(stratified, seeded) and unknown classes go to test; `--test-data` then gives a separate test
set. `originprobe evaluate --protocol FAMILY` runs every split of a family.

Annotation files are read unchanged (`path<TAB>integer_label`, paths relative to `--root`):
- train, validation and known-class test files: label i is the protocol's i-th known class;
- unknown-class files: the label is the unknown class named by a folder in the image's path, or,
  when no folder names one, the i-th class of the chosen unknown group.

Rules this module keeps, whatever the published files do:
- validation is never the test set: where a family publishes no separate validation file
  (`"val": []`), validation is carved from the training file (stratified, seeded);
- unknown classes only ever reach the test set.
Nothing here extracts features: resolving a protocol only reads annotation files and, for a
dry run, checks that the images they name exist.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..data.samples import Dataset, DatasetError, Problem, load_annotations

ROLES = ("train", "val", "test_known", "test_unknown")


class ProtocolError(DatasetError):
    """A protocol that does not exist, or whose annotation files cannot be found."""


@dataclass(frozen=True)
class Protocol:
    name: str
    family: str
    split: str
    title: str
    source: str
    notes: str
    known: tuple[str, ...]
    unknown: dict[str, tuple[str, ...]]  # group -> unknown classes
    files: dict  # role -> candidate paths ({split} filled in)
    raw_tree: str | None = None  # layout of raw images annotations can be made from
    data: str | None = None  # one labelled dataset under the root, split here

    def unknown_classes(self, group: str = "all") -> list[str]:
        if group not in self.unknown:
            raise ProtocolError(
                f"{self.name}: no unknown group {group!r}; groups: {', '.join(self.unknown)}"
            )
        return list(self.unknown[group])

    def candidates(self, role: str, group: str = "all") -> list[str]:
        c = self.files.get(role) or []
        if role == "test_unknown":
            c = c.get(group, []) if isinstance(c, dict) else c
        return [p.format(split=self.split) for p in c]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "source": self.source,
            "notes": self.notes,
            "known": list(self.known),
            "unknown": {g: list(c) for g, c in self.unknown.items()},
            "files": {
                r: self.candidates(r)
                if r != "test_unknown"
                else {g: self.candidates(r, g) for g in self.unknown}
                for r in ROLES
            }
            if self.data is None
            else {"data": self.data},
            "raw_tree": self.raw_tree,
        }


def _families() -> dict[str, dict]:
    out = {}
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            spec = json.loads(entry.read_text(encoding="utf-8"))
            out[spec["family"]] = spec
    return out


def list_protocols() -> list[Protocol]:
    protocols = []
    for family, spec in _families().items():
        for split, sp in spec["splits"].items():
            protocols.append(
                Protocol(
                    name=f"{family}:{split}" if split else family,
                    family=family,
                    split=split,
                    title=spec["title"],
                    source=spec["source"],
                    notes=spec.get("notes", ""),
                    known=tuple(sp["known"]),
                    unknown={g: tuple(c) for g, c in sp["unknown"].items()},
                    files=spec.get("files", {}),
                    raw_tree=spec.get("raw_tree"),
                    data=spec.get("data"),
                )
            )
    return protocols


def get_protocol(name: str) -> Protocol:
    for p in list_protocols():
        if p.name == name:
            return p
    raise ProtocolError(
        f"unknown protocol {name!r}; protocols: "
        f"{', '.join(p.name for p in list_protocols())} (or a family name, "
        "for all its splits)"
    )


def expand(name: str) -> list[str]:
    """A protocol name, or a family name standing for every split of the family."""
    names = [p.name for p in list_protocols()]
    if name in names:
        return [name]
    family = [n for n in names if n.split(":")[0] == name]
    if family:
        return family
    get_protocol(name)  # raises, listing the protocols
    return []


@dataclass
class ResolvedProtocol:
    """A protocol bound to files on this machine: one Dataset per role (val may be None)."""

    protocol: Protocol
    group: str
    root: Path
    files: dict[str, Path | None]
    datasets: dict[str, Dataset | None]
    generated: Path | None = None  # where annotation files were generated, if they were
    notes: list[str] = field(default_factory=list)

    @property
    def known(self) -> list[str]:
        return list(self.protocol.known)

    @property
    def unknown(self) -> list[str]:
        return self.protocol.unknown_classes(self.group)

    def problems(self) -> list[Problem]:
        return [p for ds in self.datasets.values() if ds is not None for p in ds.problems]

    def counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for role, ds in self.datasets.items():
            if ds is not None:
                out[role] = dict(sorted(ds.counts().items()))
        return out

    def missing_images(self) -> dict[str, list[str]]:
        """Images named by each role's annotation file that are not on disk."""
        return {role: ds.missing_files() for role, ds in self.datasets.items() if ds is not None}


def _find(base: Path, candidates: list[str]) -> Path | None:
    for c in candidates:
        if (base / c).is_file():
            return base / c
    return None


def _unknown_resolver(protocol: Protocol, group: str):
    """Label of an unknown-class line: a folder of the path naming an unknown class, else index."""
    every = {c for classes in protocol.unknown.values() for c in classes}
    group_classes = protocol.unknown_classes(group)

    def resolve(rel: str, index: int) -> str | None:
        for part in reversed(Path(rel).parts[:-1]):
            if part in every:
                return part
        return group_classes[index] if 0 <= index < len(group_classes) else None

    return resolve


def resolve_protocol(
    name: str,
    root: str | Path,
    group: str = "all",
    annotations: str | Path | None = None,
    seed: int = 0,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    allow_outside_root: bool = False,
) -> ResolvedProtocol:
    """Find the protocol's annotation files under `annotations` (default: `root`) and read them.

    When they are missing and `root` holds the raw image tree the family can be built from
    (GenImage: `<generator>/**/{train,val}/{ai,nature}`), equivalent annotation files are generated
    deterministically into `annotations` (default: `root/originprobe-annotations`) and used.
    """
    protocol = get_protocol(name)
    root = Path(root)
    if not root.is_dir():
        raise ProtocolError(f"{root}: protocol root is not a directory")
    unknown = protocol.unknown_classes(group)
    if protocol.data is not None:
        from ..data.samples import load_dataset

        spec = root / protocol.data
        if not spec.exists():
            raise ProtocolError(
                f"{name}: {spec} not found (the protocol reads {protocol.data!r} under --root)"
            )
        ds = load_dataset(spec, allow_outside_root=allow_outside_root)
        notes = [
            "known classes are split train/validation/test (stratified, seeded); unknown "
            "classes are test only"
        ]
        return ResolvedProtocol(protocol, group, root, {"data": spec}, {"data": ds}, None, notes)
    base = Path(annotations) if annotations else root
    found = {r: _find(base, protocol.candidates(r, group)) for r in ROLES}
    generated = None
    needed = [r for r in ROLES if r != "val" or protocol.candidates("val")]
    if any(found[r] is None for r in needed) and protocol.raw_tree == "genimage":
        from .genimage_raw import find_raw_tree, write_annotations

        tree = find_raw_tree(root, list(protocol.known) + unknown)
        if tree is not None:
            generated = Path(annotations) if annotations else root / "originprobe-annotations"
            write_annotations(
                protocol,
                tree,
                root,
                generated,
                seed=seed,
                train_per_class=train_per_class,
                test_per_class=test_per_class,
            )
            found = {r: _find(generated, protocol.candidates(r, group)) for r in ROLES}
    missing = [r for r in needed if found[r] is None]
    if missing:
        tried = "; ".join(f"{r}: {', '.join(protocol.candidates(r, group))}" for r in missing)
        hint = (
            " (or the raw GenImage tree <root>/<generator>/**/{train,val}/{ai,nature})"
            if protocol.raw_tree == "genimage"
            else ""
        )
        raise ProtocolError(f"{name}: annotation file(s) not found under {base}: {tried}{hint}")
    known = list(protocol.known)
    datasets: dict[str, Dataset | None] = {}
    for role in ROLES:
        f = found[role]
        if f is None:
            datasets[role] = None
            continue
        resolver = _unknown_resolver(protocol, group) if role == "test_unknown" else known
        # files originprobe wrote from the user's folder tree follow that tree's links
        datasets[role] = load_annotations(
            f,
            resolver,
            root=root,
            allow_outside_root=allow_outside_root,
            follow_links=generated is not None,
        )
    notes = []
    if datasets["val"] is None:
        notes.append(
            "validation is carved from the training file (stratified, seeded): the "
            "family publishes no validation file separate from its test set"
        )
    return ResolvedProtocol(protocol, group, root, found, datasets, generated, notes)


__all__ = [
    "Protocol",
    "ProtocolError",
    "ResolvedProtocol",
    "get_protocol",
    "list_protocols",
    "resolve_protocol",
]
