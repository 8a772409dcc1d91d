"""Weights from the Hugging Face hub, the way timm, open_clip and transformers get them.

The local hub cache (`HF_HOME` / `HF_HUB_CACHE`) is read first. When the weights are not there,
they are downloaded with `huggingface_hub` (progress bars on stderr, `HF_ENDPOINT` and `HF_TOKEN`
respected) into that same cache, so that every later run, and the libraries themselves, find
them offline. With `HF_HUB_OFFLINE=1`, or when the hub cannot be reached, the error says which
weights are missing, where they were looked for and how to put them there; nothing ever falls
back to random weights.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .base import WeightsNotFoundError


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


@contextmanager
def offline() -> Iterator[None]:
    """Make hub libraries read only their local cache while we parse weights already fetched."""
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    old = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _cached(repo_id: str, filenames: Sequence[str]) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        p = try_to_load_from_cache(repo_id, name)
        if isinstance(p, str) and os.path.isfile(p):
            return p
    return None


def _missing(backbone: str, repo_id: str, what: str, why: str) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"{backbone}: weights not on this machine ({why}). Looked for {what} of hub repository "
        f"{repo_id!r} in the cache {cache_dir()}. With network access they are downloaded "
        f"there automatically (unset HF_HUB_OFFLINE); or fetch them on a connected machine with "
        f"`hf download {repo_id}` and copy its hub cache here; or pass --weights FILE/DIR."
    )


def fetch_file(backbone: str, repo_id: str, filenames: Sequence[str]) -> str:
    """Path of the first of `filenames` the repository has: from the cache, else downloaded."""
    found = _cached(repo_id, filenames)
    if found:
        return found
    what = " or ".join(filenames)
    if hub_offline():
        raise _missing(backbone, repo_id, what, "HF_HUB_OFFLINE is set")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    last = None
    for name in filenames:
        try:
            return hf_hub_download(repo_id, name)
        except EntryNotFoundError:
            continue
        except RepositoryNotFoundError:
            raise _missing(backbone, repo_id, what, "the hub has no such repository") from None
        except Exception as exc:  # noqa: BLE001 - network errors of every kind
            last = exc
            break
    why = f"download failed: {type(last).__name__}" if last else "none of the files exists"
    raise _missing(backbone, repo_id, what, why)


def fetch_snapshot(backbone: str, repo_id: str) -> Path:
    """A local snapshot directory of the whole repository (cache, else download)."""
    from huggingface_hub import snapshot_download

    try:
        with offline():
            return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not complete in the cache
        pass
    if hub_offline():
        raise _missing(backbone, repo_id, "a snapshot", "HF_HUB_OFFLINE is set")
    try:
        return Path(snapshot_download(repo_id))
    except Exception as exc:  # noqa: BLE001
        raise _missing(
            backbone, repo_id, "a snapshot", f"download failed: {type(exc).__name__}"
        ) from None


def is_cached(repo_id: str | None, filenames: Sequence[str]) -> bool:
    try:
        return bool(repo_id) and _cached(repo_id, filenames) is not None
    except Exception:  # noqa: BLE001 - a broken cache reads as "not available"
        return False
