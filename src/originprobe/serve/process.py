"""`originprobe serve` in a child process, for tests and benchmarks: started on 127.0.0.1, waited
for until ready, and always stopped (terminate, then kill) when the block ends, also on failure."""

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(
    model_dir: str | Path, log_path: str | Path, *args: str, ready_timeout: float = 180.0
) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, process) of a server for `model_dir`; its output goes to `log_path`."""
    import httpx

    port = free_port()
    with open(log_path, "w+") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "originprobe.cli",
                "serve",
                str(model_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + ready_timeout
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"server exited {proc.returncode}: {log.read()[-3000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready within {ready_timeout:.0f} s")
                try:
                    if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            yield base, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
