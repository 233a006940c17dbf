"""A plain `streamlit run dashboard/app.py` is as safe as ./run.sh: the repository's config."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from engine.sources.broker import free_port
from tests.support.paths import REPO
from tests.support.stores import write_empty_store


def _listening_addresses(port: int) -> set[str]:
    """The IPv4 and IPv6 addresses on which something listens on ``port`` (Linux /proc)."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                addresses.add(address)
    return addresses


def test_the_dashboard_run_plainly_listens_on_this_machine_only(tmp_path):
    port = free_port()
    db = write_empty_store(tmp_path / "reco.db")
    command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py"]
    command += ["--server.port", str(port)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "RECO_DB": str(db)}
    log = tmp_path / "streamlit.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30
        while not _listening_addresses(port) and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        # 0100007F is 127.0.0.1 as /proc writes it; 0.0.0.0 or :: would serve every network.
        assert _listening_addresses(port) == {"0100007F"}, log.read_text()
    finally:
        process.terminate()
        process.wait(10)


def test_the_repository_config_turns_off_usage_statistics_and_the_browser(tmp_path):
    shown = subprocess.run(
        [sys.executable, "-m", "streamlit", "config", "show"],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    settings = dict(
        line.split(" = ", 1) for line in shown.splitlines() if " = " in line and line[0] != "#"
    )
    assert settings["gatherUsageStats"] == "false"
    assert settings["headless"] == "true"
    assert settings["address"] == '"127.0.0.1"'
