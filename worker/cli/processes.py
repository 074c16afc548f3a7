"""`aftercare run`: the web app, a worker and beat as child processes of one command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


def _spawn(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "worker.cli", *argv], start_new_session=True)


def run_parts(host: str, port: int) -> int:
    """Start web, worker and beat as child processes; stop all of them on Ctrl-C or when one exits."""
    procs = [_spawn("web", "--host", host, "--port", str(port)), _spawn("worker"), _spawn("beat")]
    print(f"Aftercare is running on http://{host}:{port}  (Ctrl-C stops it)", flush=True)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    while not stopping:
        for p in procs:
            if p.poll() is not None:
                print(f"aftercare: a part exited with status {p.returncode}; stopping", file=sys.stderr)
                stopping, code = True, 1
        time.sleep(0.3)
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.time() + 15
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.time(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    print("stopped", flush=True)
    return code
