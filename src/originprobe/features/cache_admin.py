"""`originprobe cache ls|prune`: what the feature cache holds, and removing what is not needed.

A namespace is removed by renaming it aside under its lock, then deleting it, so that a reader
never sees half a namespace; a namespace some process is writing right now (a claim or a shard in
progress) is left alone.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .store import FeatureStore, StoreInfo, open_namespaces


def list_cache(root: str | Path) -> list[StoreInfo]:
    return [st.info() for st in open_namespaces(root)]


def format_cache_table(rows: list[StoreInfo]) -> str:
    from ..report.results import markdown_table
    now = time.time()
    body = [[r.namespace, r.backbone, r.images, len(r.layers),
             ", ".join(r.layers[:4]) + (" ..." if len(r.layers) > 4 else ""),
             f"{r.bytes / 1e6:.1f}", f"{(now - r.last_used) / 86400:.1f}"] for r in rows]
    total = sum(r.bytes for r in rows)
    return (markdown_table(["namespace", "backbone", "images", "layers", "names", "MB",
                            "days since used"], body)
            + f"\n{len(rows)} namespace(s), {total / 1e6:.1f} MB")


def _busy(st: FeatureStore) -> bool:
    return any(st.dir.glob(".tmp-*")) or any((st.dir / "claims").glob("*.claim"))


def prune_cache(root: str | Path, older_than_days: float | None = None,
                backbone: str | None = None, dry_run: bool = False) -> list[StoreInfo]:
    removed = []
    now = time.time()
    for st in open_namespaces(root):
        info = st.info()
        if backbone is not None and info.backbone != backbone:
            continue
        if older_than_days is not None and now - info.last_used < older_than_days * 86400:
            continue
        if _busy(st):
            continue
        removed.append(info)
        if not dry_run:
            with st.lock:
                trash = st.dir.with_name(f".trash-{st.dir.name}-{os.getpid()}")
                os.rename(st.dir, trash)
            shutil.rmtree(trash, ignore_errors=True)
    return removed
