"""Fitted bundles on the Hugging Face Hub: `hf://ORG/NAME[@REVISION]` wherever a model folder is
accepted, and `push_bundle` (`originprobe push`).

    path, source = fetch_bundle("hf://lab/originprobe-genimage@v1")   # into the Hub cache
    push_bundle("model/", "lab/originprobe-genimage", revision="v1")

A bundle is downloaded with `huggingface_hub` into the standard Hub cache
(`models--ORG--NAME/snapshots/COMMIT/...`, with `refs/REVISION`), with a progress bar, and is
read from there offline (`HF_HUB_OFFLINE=1`, or no network): the same folder `Attributor.load`
reads locally, with every integrity check of a local bundle (a changed cached file is refused,
named). The commit the revision resolved to is pinned into the loaded model's description.
`push_bundle` checks the bundle, refuses a repository that holds anything but an originprobe
model, and uploads every file in one commit. The token comes from `HF_TOKEN` or the cached
login and is never printed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .bundle import FORMAT, MODEL_JSON, BundleError, read_model

PREFIX = "hf://"
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
_REVISION = re.compile(r"^[\w][\w./-]{0,199}$")
#: files a new Hub repository may already hold without holding something else
HUB_DEFAULTS = {".gitattributes", "README.md"}


def is_hub_ref(ref: Any) -> bool:
    return isinstance(ref, str) and ref.startswith(PREFIX)


def parse_ref(ref: str) -> tuple[str, str | None]:
    """`hf://ORG/NAME[@REVISION]` → (ORG/NAME, REVISION or None)."""
    body = ref[len(PREFIX) :] if ref.startswith(PREFIX) else ref
    repo, _, revision = body.partition("@")
    if not _REPO.match(repo) or ".." in repo:
        raise ConfigError(f"{ref}: not a Hub model; write hf://ORG/NAME or hf://ORG/NAME@REVISION")
    if "@" in body and (not _REVISION.match(revision) or ".." in revision):
        raise ConfigError(f"{ref}: revision {revision!r} is not a branch, tag or commit name")
    return repo, revision or None


def fetch_bundle(ref: str) -> tuple[Path, dict]:
    """The local folder of bundle `ref` in the Hub cache (downloaded when missing and online),
    and where it came from: {"repo", "revision" asked, "commit" it resolved to}."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, revision = parse_ref(ref)
    try:
        folder = Path(snapshot_download(repo, revision=revision or "main", repo_type="model"))
    except RevisionNotFoundError:
        raise BundleError(
            f"{ref}: the Hub repository {repo} has no revision {revision!r}"
        ) from None
    except (RepositoryNotFoundError, GatedRepoError):
        raise BundleError(
            f"{ref}: no Hub repository {repo} that this token may read (HF_TOKEN or "
            "`hf auth login` for a private one)"
        ) from None
    except LocalEntryNotFoundError:
        raise BundleError(
            f"{ref}: not in the Hub cache ({_cache()}) and the Hub cannot be reached (offline, "
            "or HF_HUB_OFFLINE=1); download it once with network access"
        ) from None
    except OSError as exc:  # HTTP errors, disk
        raise BundleError(f"{ref}: could not download ({exc})") from None
    if not (folder / MODEL_JSON).is_file():
        raise BundleError(f"{ref}: the Hub repository {repo} holds no originprobe model "
                          f"({MODEL_JSON} missing)")  # fmt: skip
    return folder, {"repo": repo, "revision": revision or "main", "commit": folder.name}


def _cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _token(token: str | None) -> str:
    from huggingface_hub import get_token

    found = token or get_token()
    if not found:
        raise ConfigError(
            "no Hugging Face token: set HF_TOKEN, or log in once with `hf auth login`"
        )
    return found


def _check_target(api, repo: str, revision: str | None) -> set[str]:
    """The files of `repo` at `revision` (at main when that branch is still to be made from it),
    after refusing a repository that holds anything but an originprobe model."""
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    try:
        files = set(api.list_repo_files(repo, revision=revision))
    except RevisionNotFoundError:
        revision = None  # a new branch starts from main
        files = set(api.list_repo_files(repo))
    if not files - HUB_DEFAULTS:
        return files
    if MODEL_JSON in files:
        try:
            meta = json.loads(Path(api.hf_hub_download(repo, MODEL_JSON, revision=revision))
                              .read_text(encoding="utf-8"))  # fmt: skip
            if isinstance(meta, dict) and meta.get("format") == FORMAT:
                return files
        except (EntryNotFoundError, RevisionNotFoundError, ValueError, OSError):
            pass
    shown = ", ".join(sorted(files)[:5]) + (" …" if len(files) > 5 else "")
    raise ConfigError(
        f"hf://{repo}: the repository holds something other than an originprobe model "
        f"({shown}); refusing to push into it"
    )


def push_bundle(
    model_dir: str | Path, repo: str, private: bool = False, revision: str | None = None,
    token: str | None = None,
) -> dict:  # fmt: skip
    """Upload bundle `model_dir` to Hub repository `repo` (created when missing) in one commit;
    {"repo", "revision", "commit", "url", "files"}."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    repo, rev = parse_ref(f"{PREFIX}{repo}@{revision}" if revision else f"{PREFIX}{repo}")
    model_dir = Path(model_dir)
    parts = read_model(model_dir)  # a whole, valid bundle, or a BundleError naming the file
    api = HfApi(token=_token(token))
    api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
    there = _check_target(api, repo, rev)  # a new branch starts with main's files
    if rev and rev != "main":
        api.create_branch(repo, branch=rev, exist_ok=True)
    files = sorted(p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file())
    stale = there - set(files) - {".gitattributes"}
    ops = [CommitOperationDelete(path_in_repo=f) for f in sorted(stale)] + [
        CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(model_dir / f)) for f in files
    ]
    info = api.create_commit(
        repo, ops, revision=rev, commit_message=f"originprobe model: {', '.join(parts.classes)}"
    )
    return {"repo": repo, "revision": rev or "main", "commit": info.oid,
            "url": info.commit_url, "files": files}  # fmt: skip
