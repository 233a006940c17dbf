"""Engine processes for tests: a worker as a child process, waiting on it, its environment."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support.paths import PYTHON, REPO


def wait_for(
    predicate,
    timeout: float,
    what: str,
    every: float = 0.2,
    ignoring: tuple[type[Exception], ...] = (),
):
    """Poll ``predicate`` every ``every`` seconds until it returns something truthy; fail
    naming ``what`` after ``timeout`` seconds.

    An exception of a type in ``ignoring`` (a server not listening yet) counts as not yet.
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except ignoring as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


class Worker:
    """`python -m engine worker` as a child process, its output in a log file."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        command: list[str] | None = None,
        cwd: Path = REPO,
    ):
        self.env = env
        self.log_path = log_path
        self.command = command or [PYTHON, "-m", "engine", "worker"]
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self._log_offset = 0

    def start(self) -> Worker:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.cwd
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def output(self) -> str:
        """What this run of the worker has logged so far."""
        with open(self.log_path, errors="replace") as file:
            file.seek(self._log_offset)
            return file.read()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def stop_quietly(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(30)


def engine_env_with(base: dict[str, str], **overrides) -> dict[str, str]:
    env = dict(base)
    env.update({key: str(value) for key, value in overrides.items()})
    return env


def env_without_reco(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment minus any RECO_ setting the developer may have exported."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if not k.startswith("RECO_")}


def freeze(pid: int) -> None:
    """SIGSTOP ``pid`` and wait until the kernel reports it stopped."""
    os.kill(pid, signal.SIGSTOP)
    wait_for(lambda: _state(pid) in ("T", "t"), 10, f"process {pid} to stop", every=0.001)


def thaw(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2]


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")
