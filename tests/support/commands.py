"""Commands run as a user runs them, to their end, and what their output says.

Each runs from a folder of its own, with no RECO_* variable but those given.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.paths import PYTHON, REPO
from tests.support.workers import env_without_reco

FAUST = str(Path(PYTHON).parent / "faust")
HOST = "127.0.0.1"
JOB_TIMEOUT_S = 300  # a slow command on a busy 2-core machine; they take 5 to 40 s alone


def command_env(**settings: Any) -> dict[str, str]:
    """The environment a user's shell would have: no RECO_* but ``settings``; the repo importable."""
    env = env_without_reco()
    env["PYTHONPATH"] = str(REPO)
    env.update({name: str(value) for name, value in settings.items()})
    return env


def shell_env(**settings: Any) -> dict[str, str]:
    """As command_env, with the virtualenv's ``python`` first on PATH, for README lines."""
    env = command_env(**settings)
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def finished(argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float):
    """Run ``argv`` to its end: its exit code and output.

    One that overruns is interrupted as Ctrl-C would (its brokers stop with
    it: Tansu runs in a session of its own and would outlive a SIGKILL), then
    killed, and TimeoutExpired is raised.
    """
    process = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
        raise
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def engine(*args: Any, env: dict[str, str], cwd: Path, timeout: float = 120):
    """``python -m engine ARGS``, finished; its exit code and output."""
    return finished([PYTHON, "-m", "engine", *map(str, args)], env=env, cwd=cwd, timeout=timeout)


def shell(command: str, *, env: dict[str, str], cwd: Path, timeout: float = JOB_TIMEOUT_S):
    """A README command line run by bash, as a user pastes it."""
    return finished(["bash", "-c", command], env=env, cwd=cwd, timeout=timeout)


def on_terminal(argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 120):
    """Run ``argv`` with a terminal as its output, as at a shell prompt: (exit code, output)."""
    master, terminal = pty.openpty()
    process = subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal
    )
    os.close(terminal)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1.0)[0]:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    return code, b"".join(chunks).decode(errors="replace")


def one_line(stderr: str) -> str:
    """The single line of an error, failing if there is not exactly one."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr[-3000:]}"
    return lines[0]


def sent(output: str) -> int:
    """The event count of produce's closing line ('sent N events to TOPIC ...')."""
    found = re.findall(r"sent (\d+) events to ", output)
    assert found, f"produce did not say what it sent:\n{output[-2000:]}"
    return int(found[-1])


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
