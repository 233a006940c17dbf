"""The dashboard for tests: its app file, and the app running under `streamlit run`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.sources.broker import free_port
from tests.support.paths import REPO

APP = REPO / "dashboard" / "app.py"


@contextmanager
def running_dashboard(db: Path | str, log: Path, timeout_s: float = 30.0) -> Iterator[str]:
    """Run ``streamlit run dashboard/app.py`` headless on a free port; yield its URL.

    ``db`` is RECO_DB: a store, or a deployment's (a comma-separated list or a folder).
    """
    port = free_port()
    env = {**os.environ, "RECO_DB": str(db), "RECO_DASHBOARD_REFRESH_S": "2"}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
        "--client.toolbarMode",
        "viewer",
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, process, timeout_s, log)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_healthy(url: str, process: subprocess.Popen, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"streamlit exited with {process.returncode}:\n{log.read_text(errors='replace')}"
            )
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(
        f"streamlit did not answer on {url} within {timeout_s:.0f} s:\n"
        f"{log.read_text(errors='replace')}"
    )
