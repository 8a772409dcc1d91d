"""A small stand-in for the Hugging Face Hub, on 127.0.0.1, for download and upload tests.

It holds model repositories in memory (a branch → its commits, each commit a {path: bytes}),
seeded from folders, and answers the requests huggingface_hub makes:
- reading: repository info at a revision, the file tree, HEAD/GET of
  `/{repo}/resolve/{revision}/{file}` with the commit and ETag headers the Hub sends;
- writing: repository creation, branch creation, `preupload` (every file "regular") and `commit`
  (the NDJSON body, files inline in base64, deletions), with the bearer token checked when one
  is set.
Every request line is recorded, and every Authorization header.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class FakeHub:
    def __init__(self, repos: dict[str, Path] | None = None, token: str | None = None):
        self.token = token
        self.requests: list[str] = []
        self.auth: list[str] = []
        self.validated: list[bool] = []  # model cards checked by /api/validate-yaml
        # repo → {"branches": {name: commit}, "commits": {commit: {path: bytes}}}
        self.store: dict[str, dict] = {}
        for repo, folder in (repos or {}).items():
            files = {p.relative_to(folder).as_posix(): p.read_bytes()
                     for p in sorted(Path(folder).rglob("*")) if p.is_file()}  # fmt: skip
            commit = _sha(repo)
            self.store[repo] = {"branches": {"main": commit}, "commits": {commit: files}}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._serve(self, body=False)

            def do_GET(self):
                hub._serve(self, body=True)

            def do_POST(self):
                hub._post(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # ---------------------------------------------------------------- helpers
    @property
    def commits(self) -> dict[str, str]:
        return {r: s["branches"]["main"] for r, s in self.store.items()}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def files(self, repo: str, revision: str = "main") -> dict[str, bytes] | None:
        s = self.store.get(repo)
        if s is None:
            return None
        commit = s["branches"].get(revision, revision)
        return s["commits"].get(commit)

    def _commit_of(self, repo: str, revision: str) -> str | None:
        s = self.store[repo]
        commit = s["branches"].get(revision, revision)
        return commit if commit in s["commits"] else None

    def _json(self, h, obj, status=200, body=True, headers=None) -> None:
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if body:
            h.wfile.write(data)

    def _error(self, h, code: str, body: bool, status: int = 404) -> None:
        h.send_response(status)
        h.send_header("X-Error-Code", code)
        h.send_header("Content-Length", "2")
        h.end_headers()
        if body:
            h.wfile.write(b"{}")

    def _authorised(self, h) -> bool:
        got = h.headers.get("authorization", "")
        if got:
            self.auth.append(got)
        return self.token is None or got == f"Bearer {self.token}"

    # ---------------------------------------------------------------- reading
    def _serve(self, h, body: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(f"{h.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "whoami-v2"]:
            return self._json(h, {"name": "tester", "type": "user", "orgs": []}, body=body)
        if parts[:2] == ["api", "models"]:
            repo = "/".join(parts[2:4])
            if repo not in self.store:
                return self._error(h, "RepoNotFound", body, 401)
            kind = parts[4] if len(parts) > 4 else "revision"
            revision = parts[5] if len(parts) > 5 else "main"
            commit = self._commit_of(repo, revision)
            if commit is None:
                return self._error(h, "RevisionNotFound", body)
            files = self.store[repo]["commits"][commit]
            if kind == "tree":
                entries = [{"type": "file", "path": r, "size": len(d),
                            "oid": hashlib.sha1(d).hexdigest()}
                           for r, d in sorted(files.items())]  # fmt: skip
                return self._json(h, entries, body=body)
            return self._json(h, {"id": repo, "modelId": repo, "sha": commit, "private": False,
                                  "siblings": [{"rfilename": r} for r in sorted(files)]},
                              body=body)  # fmt: skip
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, revision, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            if repo not in self.store:
                return self._error(h, "RepoNotFound", body, 401)
            commit = self._commit_of(repo, revision)
            if commit is None:
                return self._error(h, "RevisionNotFound", body)
            data = self.store[repo]["commits"][commit].get(filename)
            if data is None:
                return self._error(h, "EntryNotFound", body)
            h.send_response(200)
            h.send_header("X-Repo-Commit", commit)
            h.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            h.send_header("Content-Length", str(len(data)))
            h.send_header("Content-Type", "application/octet-stream")
            h.end_headers()
            if body:
                h.wfile.write(data)
            return
        self._error(h, "NotFound", body)

    # ---------------------------------------------------------------- writing
    def _post(self, h) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(f"POST {path}")
        data = h.rfile.read(int(h.headers.get("content-length", 0) or 0))
        if not self._authorised(h):
            return self._error(h, "Unauthorized", True, 401)
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "validate-yaml"]:  # a model card's front matter, as the Hub checks
            import yaml

            content = json.loads(data).get("content", "")
            try:
                front = content.split("---\n")[1] if content.startswith("---\n") else ""
                ok = isinstance(yaml.safe_load(front) or {}, dict)
            except (yaml.YAMLError, IndexError):
                ok = False
            self.validated.append(ok)
            return self._json(h, {} if ok else {"errors": [{"message": "bad YAML"}]},
                              status=200 if ok else 400)  # fmt: skip
        if parts[:3] == ["api", "repos", "create"]:
            req = json.loads(data)
            repo = f"{req.get('organization') or 'tester'}/{req['name']}"
            if repo in self.store:
                return self._json(h, {"error": "already exists", "url": f"{self.url}/{repo}"},
                                  status=409)  # fmt: skip
            commit = _sha(repo + "/init")
            self.store[repo] = {"branches": {"main": commit},
                                "commits": {commit: {".gitattributes": b"*.safetensors lfs\n"}}}  # fmt: skip
            return self._json(h, {"url": f"{self.url}/{repo}", "name": repo})
        if parts[:2] != ["api", "models"] or len(parts) < 6:
            return self._error(h, "NotFound", True)
        repo, kind, revision = "/".join(parts[2:4]), parts[4], "/".join(parts[5:])
        if repo not in self.store:
            return self._error(h, "RepoNotFound", True)
        s = self.store[repo]
        if kind == "branch":
            if revision in s["branches"]:
                return self._json(h, {"error": "branch exists"}, status=409)
            s["branches"][revision] = s["branches"]["main"]
            return self._json(h, {})
        if kind == "preupload":
            files = json.loads(data)["files"]
            return self._json(h, {"files": [{"path": f["path"], "uploadMode": "regular",
                                             "shouldIgnore": False, "oid": None}
                                            for f in files]})  # fmt: skip
        if kind == "commit":
            if revision not in s["branches"]:
                return self._error(h, "RevisionNotFound", True)
            files = dict(s["commits"][s["branches"][revision]])
            for line in data.decode().splitlines():
                op = json.loads(line)
                if op["key"] == "file":
                    files[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
                elif op["key"] == "deletedFile":
                    files.pop(op["value"]["path"], None)
                elif op["key"] not in ("header",):
                    return self._error(h, f"Unsupported-{op['key']}", True, 400)
            commit = _sha(json.dumps(sorted((k, hashlib.sha1(v).hexdigest())
                                            for k, v in files.items())) + revision)  # fmt: skip
            s["commits"][commit] = files
            s["branches"][revision] = commit
            return self._json(h, {"commitUrl": f"{self.url}/{repo}/commit/{commit}",
                                  "commitOid": commit, "success": True})  # fmt: skip
        self._error(h, "NotFound", True)
