"""SSH to the lab's nodes (paramiko): fan-out, streaming, timeouts, pinned host keys.

Host keys are recorded in ``build/<lab>/known_hosts`` the first time a node is
reached and enforced afterwards: a changed key raises :class:`HostKeyChanged`
naming the node. Only connection failures are retried; a command that ran and
failed is reported, never run twice.

    with Remote(provider.nodes(), known_hosts_file(build)) as remote:
        results = remote.run_all("docker info --format '{{.Name}}'")
        results["coreos1"].stdout
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import paramiko

from lab.errors import LabError
from lab.nodes import NodeAccess

KNOWN_HOSTS_NAME = "known_hosts"
TIMED_OUT_EXIT_CODE = 124  # what timeout(1) returns, so callers can treat both alike


class RemoteError(LabError):
    """A node could not be reached or a command could not be run."""


class HostKeyChanged(RemoteError):
    """A node presented a different host key than the one recorded for it."""


@dataclass(frozen=True)
class CommandResult:
    node: str
    command: str
    exit_code: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self) -> CommandResult:
        """Return self, or raise RemoteError naming the node, command and its stderr."""
        if not self.ok:
            why = "timed out" if self.timed_out else f"exited {self.exit_code}"
            tail = (self.stderr or self.stdout).strip().splitlines()[-3:]
            raise RemoteError(f"{self.node}: `{self.command}` {why}: {' | '.join(tail)}")
        return self


def known_hosts_file(build: Path) -> Path:
    return build / KNOWN_HOSTS_NAME


def host_key_name(address: str, port: int) -> str:
    """The name OpenSSH uses in known_hosts for an address and port."""
    return address if port == 22 else f"[{address}]:{port}"


class _RecordFirstContact(paramiko.MissingHostKeyPolicy):
    """Trust a node's key the first time we meet it and write it down."""

    def __init__(self, store: _HostKeyStore):
        self._store = store

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key) -> None:
        self._store.record(hostname, key)


class _HostKeyStore:
    """known_hosts shared by all connections; writes are serialised."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def load_into(self, client: paramiko.SSHClient) -> None:
        with self._lock:
            if self.path.exists():
                client.load_host_keys(str(self.path))

    def record(self, hostname: str, key: paramiko.PKey) -> None:
        with self._lock:
            keys = paramiko.HostKeys()
            if self.path.exists():
                keys.load(str(self.path))
            keys.add(hostname, key.get_name(), key)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            keys.save(str(self.path))


# paramiko raises these when the TCP/SSH handshake itself fails: worth a retry.
_CONNECTION_ERRORS = (
    paramiko.ssh_exception.NoValidConnectionsError,
    socket.timeout,
    ConnectionError,
    EOFError,
    OSError,
)


class Remote:
    """Run commands on lab nodes over SSH, one cached connection per node."""

    def __init__(
        self,
        nodes: Sequence[NodeAccess],
        known_hosts: Path,
        *,
        connect_timeout: float = 10.0,
        connect_attempts: int = 4,
        printer: Callable[[str], None] | None = print,
    ):
        self.nodes = {node.name: node for node in nodes}
        self._keys = _HostKeyStore(known_hosts)
        self._connect_timeout = connect_timeout
        self._connect_attempts = connect_attempts
        self._printer = printer
        self._print_lock = threading.Lock()
        self._clients: dict[str, paramiko.SSHClient] = {}
        self._client_locks = {name: threading.Lock() for name in self.nodes}

    # ------------------------------------------------------------ connections

    def _connect_once(self, node: NodeAccess) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        self._keys.load_into(client)
        client.set_missing_host_key_policy(_RecordFirstContact(self._keys))
        try:
            client.connect(
                node.address,
                port=node.port,
                username=node.user,
                key_filename=str(node.key_file),
                timeout=self._connect_timeout,
                banner_timeout=self._connect_timeout,
                auth_timeout=self._connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyChanged(
                f"{node.name}: host key of {node.address} changed since it was recorded in "
                f"{self._keys.path}; if the node was rebuilt, remove its line there"
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise RemoteError(
                f"{node.name}: {node.user}@{node.address} refused the key {node.key_file}"
            ) from exc
        except BaseException:
            client.close()
            raise
        return client

    def _connect(self, node: NodeAccess) -> paramiko.SSHClient:
        delay = 0.25
        for attempt in range(1, self._connect_attempts + 1):
            try:
                return self._connect_once(node)
            except HostKeyChanged:
                raise
            except (*_CONNECTION_ERRORS, paramiko.SSHException) as exc:
                if isinstance(exc, paramiko.AuthenticationException):
                    raise
                if attempt == self._connect_attempts:
                    raise RemoteError(
                        f"{node.name}: cannot connect to {node.address}:{node.port} "
                        f"after {attempt} attempts: {exc}"
                    ) from exc
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def client(self, name: str) -> paramiko.SSHClient:
        """The live connection to a node, (re)connecting when needed."""
        node = self._node(name)
        with self._client_locks[name]:
            client = self._clients.get(name)
            transport = client.get_transport() if client else None
            if client is None or transport is None or not transport.is_active():
                if client is not None:
                    client.close()
                client = self._connect(node)
                self._clients[name] = client
            return client

    def forget(self, name: str) -> None:
        """Drop a node's cached connection (after it was restarted, for example)."""
        with self._client_locks[name]:
            client = self._clients.pop(name, None)
        if client is not None:
            client.close()

    def close(self) -> None:
        for name in list(self._clients):
            self.forget(name)

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _node(self, name: str) -> NodeAccess:
        try:
            return self.nodes[name]
        except KeyError:
            raise RemoteError(
                f"{name!r} is not a node of this lab ({', '.join(self.nodes)})"
            ) from None

    # --------------------------------------------------------------- commands

    def _open_channel(self, name: str) -> paramiko.Channel:
        """A session channel; a dead cached transport is replaced once (nothing ran yet)."""
        try:
            return self.client(name).get_transport().open_session()  # type: ignore[union-attr]
        except (*_CONNECTION_ERRORS, paramiko.SSHException):
            self.forget(name)
            return self.client(name).get_transport().open_session()  # type: ignore[union-attr]

    def _emit(self, name: str, line: str) -> None:
        if self._printer is not None:
            with self._print_lock:
                self._printer(f"{name} | {line}")

    def run(
        self,
        name: str,
        command: str,
        *,
        timeout: float = 300.0,
        stream: bool = True,
        check: bool = False,
    ) -> CommandResult:
        """Run ``command`` on node ``name``; stream its lines prefixed with the node name."""
        started = time.monotonic()
        channel = self._open_channel(name)
        channel.settimeout(0.2)
        channel.exec_command(command)
        out = _LineCollector(lambda line: self._emit(name, line) if stream else None)
        err = _LineCollector(lambda line: self._emit(name, line) if stream else None)
        timed_out = False
        while True:
            progressed = _drain(channel, out, err)
            if channel.exit_status_ready() and not progressed:
                _drain(channel, out, err)
                break
            if time.monotonic() - started > timeout:
                timed_out = True
                break
            if not progressed:
                time.sleep(0.01)
        exit_code = TIMED_OUT_EXIT_CODE if timed_out else channel.recv_exit_status()
        channel.close()
        result = CommandResult(
            node=name,
            command=command,
            exit_code=exit_code,
            stdout=out.finish(),
            stderr=err.finish(),
            duration=time.monotonic() - started,
            timed_out=timed_out,
        )
        return result.check() if check else result

    def run_all(
        self,
        command: str | Callable[[NodeAccess], str],
        *,
        nodes: Iterable[str] | None = None,
        timeout: float = 300.0,
        stream: bool = True,
        check: bool = False,
    ) -> dict[str, CommandResult]:
        """Run on several nodes at once (all by default); ``command`` may depend on the node."""
        names = list(nodes) if nodes is not None else list(self.nodes)
        if not names:
            return {}

        def one(name: str) -> CommandResult:
            text = command(self._node(name)) if callable(command) else command
            return self.run(name, text, timeout=timeout, stream=stream, check=check)

        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            return dict(zip(names, pool.map(one, names), strict=True))

    def put(self, name: str, data: bytes, remote_path: str, mode: int = 0o644) -> None:
        """Write ``data`` to ``remote_path`` on a node (over SFTP)."""
        with self.client(name).open_sftp() as sftp, sftp.open(remote_path, "wb") as handle:
            handle.write(data)
            handle.chmod(mode)


class _LineCollector:
    """Keeps all bytes of one stream and hands out complete lines as they arrive."""

    def __init__(self, on_line: Callable[[str], object]):
        self._on_line = on_line
        self._chunks: list[bytes] = []
        self._pending = b""

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._on_line(line.decode(errors="replace").rstrip("\r"))

    def finish(self) -> str:
        if self._pending:
            self._on_line(self._pending.decode(errors="replace"))
            self._pending = b""
        return b"".join(self._chunks).decode(errors="replace")


def _drain(channel: paramiko.Channel, out: _LineCollector, err: _LineCollector) -> bool:
    """Read whatever is ready on both streams; True if anything was read."""
    progressed = False
    while channel.recv_ready():
        out.feed(channel.recv(65536))
        progressed = True
    while channel.recv_stderr_ready():
        err.feed(channel.recv_stderr(65536))
        progressed = True
    return progressed
