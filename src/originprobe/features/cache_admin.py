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

from ..errors import ConfigError, MissingInputError
from .store import FeatureStore, StoreInfo, VerifyReport, open_namespaces


def list_cache(root: str | Path) -> list[StoreInfo]:
    return [st.info() for st in open_namespaces(root)]


def _busy(st: FeatureStore) -> bool:
    return any(st.dir.glob(".tmp-*")) or any((st.dir / "claims").glob("*.claim"))


def verify_cache(root: str | Path, repair: bool = False) -> list[tuple[FeatureStore, VerifyReport]]:
    """Every namespace under `root` checked shard by shard (damaged shards moved aside with
    `repair`)."""
    stores = open_namespaces(root)
    if not stores:
        raise MissingInputError(f"{root}: no feature namespaces found")
    return [(st, st.verify(repair=repair)) for st in stores]


def prune_cache(
    root: str | Path,
    older_than_days: float | None = None,
    backbone: str | None = None,
    dry_run: bool = False,
) -> list[StoreInfo]:
    if older_than_days is None and not backbone:
        raise ConfigError("give --older-than DAYS and/or --backbone NAME")
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
