"""Files written and checked the same way by every stage.

- Atomic writes: readers see the old file or the new one, never half of one. A file goes to a
  temporary name in the same folder, is fsynced and renamed over the target; a directory (a model
  bundle) is built beside the target and swapped in by rename. An interrupted command never leaves
  a truncated results file, model or cache entry where a good one was.
- Files get the usual permissions (0666 and folders 0777, less the umask), whatever the library
  that produced the bytes chose (safetensors writes 0600).
- One sha256 helper for files and bytes.
This module never decides what to write; callers do.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputExistsError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def normal_mode(path: Path, directory: bool = False) -> None:
    """Give `path` the permissions a plain `open()`/`mkdir()` would have given it."""
    try:
        os.chmod(path, (0o777 if directory else 0o666) & ~_umask())
    except OSError:
        pass


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_name(path: Path, tag: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file via a temporary file in the same folder, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        normal_mode(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Build a directory at a temporary path, then swap it in for `final` in one rename.

    The old directory, if any, is removed only after the new one is in place; on any failure the
    temporary directory is removed and `final` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(final)
    tmp.mkdir()
    try:
        yield tmp
        for f in tmp.rglob("*"):
            normal_mode(f, directory=f.is_dir())
        normal_mode(tmp, directory=True)
        fsync_dir(tmp)
        old = None
        if final.exists():
            old = _tmp_name(final, "old")
            os.rename(final, old)
        os.rename(tmp, final)
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | Path, limit: int | None = None) -> str:
    """Hex sha256 of a file's content (of its first `limit` bytes when given)."""
    h = hashlib.sha256()
    remaining = limit
    with open(path, "rb") as f:
        while remaining is None or remaining > 0:
            block = f.read(1 << 20 if remaining is None else min(1 << 20, remaining))
            if not block:
                break
            h.update(block)
            if remaining is not None:
                remaining -= len(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj) -> bytes:
    """The bytes a checksum or signature of a JSON document is computed over."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def check_output_dir(out: str | Path, markers: tuple[str, ...], what: str) -> Path:
    """A directory that may be written: new, empty, or an earlier originprobe `what` (one of
    `markers` in it), never a file or someone else's folder; checked before any work, so that a
    long run does not fail at its end."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a directory; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not any((out / m).exists() for m in markers):
        raise OutputExistsError(
            f"{out}: directory is not empty and is not an originprobe {what}; "
            "refusing to write into it"
        )
    parent = next((p for p in [out, *out.parents] if p.exists()), Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"{out}: cannot write there ({parent} is not a writable folder)")
    return out


def check_run_dir(out: str | Path) -> Path:
    return check_output_dir(out, ("results.json", "config.json"), "run")


def check_model_dir(out: str | Path) -> Path:
    return check_output_dir(out, ("model.json",), "model")


def written_files(out: str | Path) -> list[str]:
    """The names of the files in an output folder (what a run reports it wrote)."""
    return sorted(p.name for p in Path(out).iterdir() if p.is_file())
