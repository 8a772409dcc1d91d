"""`--dry-run`: resolve the data or protocol of a run, count samples per class and role, list
missing files; nothing is hashed, decoded or extracted."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data import Problem, load_dataset
from .prepare import RunConfig, resolve_for


@dataclass
class DryRun:
    header: list[str]  # lines describing the protocol or data
    counts: dict[str, dict[str, int]]  # role -> class -> samples
    missing: dict[str, list[str]]  # role -> files named but not on disk
    problems: list[Problem] = field(default_factory=list)

    @property
    def n_bad(self) -> int:
        return sum(len(v) for v in self.missing.values()) + len(self.problems)


def dry_run(cfg: RunConfig) -> DryRun:
    if cfg.protocol:
        rp = resolve_for(cfg)
        header = [
            f"# {cfg.protocol}: {rp.protocol.title}",
            "",
            rp.protocol.source,
            "",
            f"known ({len(rp.known)}): {', '.join(rp.known)}",
            f"unknown, group {rp.group} ({len(rp.unknown)}): {', '.join(rp.unknown)}",
        ]
        if rp.generated:
            header.append(f"annotation files generated from the raw tree into {rp.generated}")
        header += [f"{role}: {f if f else '(carved from train)'}" for role, f in rp.files.items()]
        header += [f"note: {note}" for note in rp.notes]
        return DryRun(header, rp.counts(), rp.missing_images(), rp.problems())
    counts, missing, problems = {}, {}, []
    for role, spec in (("data", cfg.data), ("test_data", cfg.test_data)):
        if spec:
            ds = load_dataset(
                spec,
                class_names=cfg.class_names,
                root=cfg.root,
                allow_outside_root=cfg.allow_outside_root,
            )
            counts[role] = ds.counts()
            missing[role] = ds.missing_files()
            problems += ds.problems
    header = [f"known: {', '.join(cfg.known)}"]
    absent = sorted(set(cfg.known) - {l for c in counts.values() for l in c})
    if absent:
        header.append(f"known classes with no samples: {', '.join(absent)}")
    return DryRun(header, counts, missing, problems)
