"""A real ``stemforge serve`` process on 127.0.0.1 for the browser, crash and load tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

import stemforge

SRC = str(Path(stemforge.__file__).parents[1])  # this checkout's code, whatever the venv's editable install says


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServeProcess:
    """``python -m stemforge serve`` in its own process group, its output in ``log``.

    Args:
        data: the data folder.
        log: file that receives the server's stdout and stderr.
        *args: more ``serve`` options (``--workers 2``, ...).
    """

    def __init__(self, data: Path, log: Path, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
        with open(log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "stemforge", "-q", "serve", "--data", str(data),
                                          "--port", str(self.port), "--threads", "1", *args],
                                         stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, timeout: float = 120.0) -> "ServeProcess":
        """Wait until the API answers and the workers have published the model list."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"the server exited ({self.proc.returncode}):\n{self.log.read_text()}"
            try:
                if httpx.get(f"{self.url}/api/models", timeout=70).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the server did not start:\n{self.log.read_text()}"
            time.sleep(0.2)

    def children(self) -> list[int]:
        """The server's child processes (its workers and multiprocessing's helpers), started by any of its threads."""
        found: set[int] = set()
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*"):
            try:
                found.update(int(p) for p in (task / "children").read_text().split())
            except (FileNotFoundError, ProcessLookupError):
                pass
        return sorted(found)

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        """SIGINT (as Ctrl-C) and wait; kill the group if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def rss_kb(pid: int) -> int:
    """Resident memory of a process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
