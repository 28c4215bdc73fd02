"""Keep mode with the real @jupyterlab/services client (reconnect_client.mjs): `himalia serve` on a fixed
port and token, a session in a SQLite file, `x = 41`; the server is stopped with SIGTERM (websockets
closed with 1012) and started again on the same state dir and port; the client reconnects by itself to
the same kernel and `x + 1` gives 42. The kept kernel is shut down through the second server, and
anything carrying the test's marker is killed at the end."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest

from himalia.testing import serve_process, write_keep_config

HERE = Path(__file__).parent
TOKEN = "kept-kernel-token"
MARK = "HIMALIA_TEST_PROCESS_MARK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _marked(mark: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and p.environ().get(MARK) == mark and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


@pytest.mark.timeout(300)
def test_jupyterlab_services_reconnects_to_a_kept_kernel(tmp_path, node, node_modules):
    port = _free_port()
    config = write_keep_config(tmp_path, TOKEN, port=port)
    mark = uuid.uuid4().hex
    env = {**os.environ, MARK: mark, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    env.pop("JUPYTER_TOKEN", None)
    args = ("--config", str(config), "--port", str(port))
    client = None
    try:
        with serve_process(*args, env=env, timeout=60) as first:
            url = first.url
            client = subprocess.Popen([node, "reconnect_client.mjs"], cwd=HERE, text=True, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      env={**env, "JUPYTER_URL": url, "JUPYTER_TOKEN": TOKEN,
                                           "STEP_TIMEOUT_MS": "60000"})
            lines: queue.Queue[str | None] = queue.Queue()

            def pump() -> None:
                for line in client.stdout:  # type: ignore[union-attr]
                    lines.put(line.rstrip("\n"))
                lines.put(None)

            threading.Thread(target=pump, daemon=True).start()
            seen: list[str] = []
            while True:
                line = lines.get(timeout=90)
                assert line is not None, f"the client exited before it was ready: {seen}"
                seen.append(line)
                if line.startswith("READY "):
                    ready = json.loads(line[len("READY "):])
                    break
            first.process.send_signal(signal.SIGTERM)
            assert first.process.wait(60) == 0
        with serve_process(*args, env=env, timeout=60) as second:
            assert second.url == url
            client.wait(180)
            while (line := lines.get(timeout=10)) is not None:
                seen.append(line)
            summary = json.loads(next(l for l in seen if l.startswith("SUMMARY "))[len("SUMMARY "):])
            assert client.returncode == 0, json.dumps(summary, indent=1)
            steps = {s["name"]: s for s in summary["steps"]}
            assert steps["the same kernel has x"]["saw"]["out"] == "42\n"
            assert 1012 in steps["the server goes away: the client sees the close and reconnects"]["saw"]["closes"]
            request = urllib.request.Request(f"{url}api/sessions/{ready['session']}", method="DELETE",
                                             headers={"Authorization": f"token {TOKEN}"})
            with urllib.request.urlopen(request, timeout=60) as r:
                assert r.status == 204
            assert not [p for p in _marked(mark) if "HIMALIA_KERNEL_ID" in p.environ()]
    finally:
        if client is not None and client.poll() is None:
            os.killpg(client.pid, signal.SIGKILL)
            client.wait()
        for p in _marked(mark):  # kept kernels outlive their server: none may outlive the test
            try:
                p.kill()
            except psutil.Error:
                pass
