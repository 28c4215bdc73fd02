"""What one read of a large file through the contents API costs the server in memory.

    python -m bench.read_memory [--mb 100] [--server himalia|jupyter]

For each of a text file (ASCII) and a binary file (base64), a fresh server is started, the file is
read once with GET /api/contents/<name> (the body is drained and checked for its size), and the
server's peak resident memory (VmHWM) above its resident memory just before the read is printed as a
multiple of the file size.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

TOKEN = "read-memory"


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def start(kind: str, root: Path, port: int) -> subprocess.Popen:
    if kind == "himalia":
        cmd = [sys.executable, "-m", "himalia.cli", "serve", "--port", str(port), "--root-dir", str(root),
               "--token", TOKEN]
        from himalia_contents.config import ContentsConfig

        if "max_read_size_mb" in ContentsConfig.__dataclass_fields__:  # lift the limit, to measure the cost
            cmd += ["--set", "plugins.contents.max_read_size_mb=100000"]
    else:
        cmd = [sys.executable, "-m", "jupyter_server", f"--ServerApp.port={port}", f"--ServerApp.root_dir={root}",
               f"--IdentityProvider.token={TOKEN}", "--ServerApp.open_browser=False", "--allow-root"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(kind: str, root: Path, name: str, size: int) -> float:
    port = free_port()
    proc = start(kind, root, port)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"token {TOKEN}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/api/contents", headers=headers, timeout=5).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{kind} did not start")
                time.sleep(0.2)
        before = status_kb(proc.pid, "VmRSS")
        r = requests.get(f"{base}/api/contents/{name}", headers=headers, timeout=600, stream=True)
        got = sum(len(piece) for piece in r.iter_content(1 << 20))
        peak = status_kb(proc.pid, "VmHWM")
        if r.status_code != 200 or got < size:
            raise RuntimeError(f"{kind} answered {r.status_code} with {got} bytes")
        return (peak - before) * 1024 / size
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--server", choices=["himalia", "jupyter"], default="himalia")
    args = parser.parse_args()
    size = args.mb * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
        (root / "big.txt").write_bytes(line * (size // len(line)) + b"x" * (size % len(line)))
        wide = "0123456789 abcdefghijklmnopqrstuvwxyz 🙂 ABCDEFGHIJKLMNOPQRSTUVWXYZ\n".encode()
        (root / "wide.txt").write_bytes(wide * (size // len(wide)) + b"x" * (size % len(wide)))
        with open(root / "big.bin", "wb") as f:
            f.write(os.urandom(size))
        for name, what in (("big.txt", "ASCII text"), ("wide.txt", "UTF-8 text with an emoji a line"),
                           ("big.bin", "base64")):
            ratio = measure(args.server, root, name, size)
            print(f"{args.server}: {args.mb} MB {what} read: peak RSS +{ratio * args.mb:.0f} MB, "
                  f"{ratio:.2f}x the file size")
    return 0


if __name__ == "__main__":
    sys.exit(main())
