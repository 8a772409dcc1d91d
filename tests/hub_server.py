"""A small stand-in for the Hugging Face hub, on 127.0.0.1, for download tests.

It serves folders as model repositories, answering the requests huggingface_hub makes: repository
info, the file tree, and HEAD/GET of `/{repo}/resolve/{revision}/{file}` with the commit and
ETag headers the hub sends. Every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


class FakeHub:
    def __init__(self, repos: dict[str, Path]):
        self.repos = {r: Path(d) for r, d in repos.items()}
        self.commits = {r: hashlib.sha1(r.encode()).hexdigest() for r in repos}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._serve(self, body=False)

            def do_GET(self):
                hub._serve(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

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

    def _files(self, repo: str) -> list[Path]:
        d = self.repos[repo]
        return sorted(p for p in d.rglob("*") if p.is_file())

    def _json(self, h, obj, status=200, body=True) -> None:
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)

    def _error(self, h, code: str, body: bool) -> None:
        h.send_response(404)
        h.send_header("X-Error-Code", code)
        h.send_header("Content-Length", "2")
        h.end_headers()
        if body:
            h.wfile.write(b"{}")

    def _serve(self, h, body: bool) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append(f"{h.command} {path}")
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            # /api/models/{org}/{name}/revision/{rev}  or  /api/models/{org}/{name}/tree/{rev}...
            repo = "/".join(parts[2:4])
            if repo not in self.repos:
                return self._error(h, "RepoNotFound", body)
            kind = parts[4] if len(parts) > 4 else "revision"
            files = self._files(repo)
            rel = [f.relative_to(self.repos[repo]).as_posix() for f in files]
            if kind == "tree":
                entries = []
                for f, r in zip(files, rel):
                    data = f.read_bytes()
                    entries.append(
                        {
                            "type": "file",
                            "path": r,
                            "size": len(data),
                            "oid": hashlib.sha1(data).hexdigest(),
                        }
                    )
                return self._json(h, entries, body=body)
            return self._json(
                h,
                {
                    "id": repo,
                    "modelId": repo,
                    "sha": self.commits[repo],
                    "private": False,
                    "siblings": [{"rfilename": r} for r in rel],
                },
                body=body,
            )
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, filename = "/".join(parts[:2]), "/".join(parts[4:])
            if repo not in self.repos:
                return self._error(h, "RepoNotFound", body)
            f = self.repos[repo] / filename
            if not f.is_file():
                return self._error(h, "EntryNotFound", body)
            data = f.read_bytes()
            h.send_response(200)
            h.send_header("X-Repo-Commit", self.commits[repo])
            h.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            h.send_header("Content-Length", str(len(data)))
            h.send_header("Content-Type", "application/octet-stream")
            h.end_headers()
            if body:
                h.wfile.write(data)
            return
        self._error(h, "NotFound", body)
