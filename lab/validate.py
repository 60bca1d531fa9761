"""Check a rendered build directory with each file's real consumer.

Every rendered file is handed to the program that will read it in the lab
(``vagrant validate``, ``ignition-validate``, ``docker stack config``, the
registry binary, ``redis-server``, ``haproxy -c``, ``nginx -t``, ``keepalived -t``,
``systemd-analyze verify``) or, for Traefik, to the JSON schemas shipped in
``schemas/``. A missing program is a failure naming the Debian package that
provides it, never a skip. Checks run concurrently; servers started for a
check are always stopped by PID (also on Ctrl-C), and every command has a
timeout. Details never contain the lab's secrets.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.output import make_console
from lab.paths import REPO_ROOT
from lab.render import LB_TLS_DIR, keepalived_config, mount_unit_name
from lab.secrets import SECRETS_DIRNAME
from lab.spec import LabSpec

SCHEMA_DIR = REPO_ROOT / "schemas"
TRAEFIK_STATIC_SCHEMA = SCHEMA_DIR / "traefik-v3.json"
TRAEFIK_DYNAMIC_SCHEMA = SCHEMA_DIR / "traefik-v3-file-provider.json"

COMMAND_TIMEOUT = 60.0  # seconds for one validator command
VAGRANT_TIMEOUT = 120.0  # Ruby start-up plus plugin loading can be slow
SERVER_START_TIMEOUT = 20.0  # registry / redis-server until they answer
STOP_GRACE = 5.0  # SIGTERM -> SIGKILL
MAX_WORKERS = 8

# Docker clients that may support `docker stack config` (Debian 12's docker.io
# 20.10 does not; Docker CE's CLI and newer docker.io packages do).
DOCKER_CLIENTS = ("/usr/local/bin/docker", "docker", "/usr/bin/docker")

CLOUD_CONFIG_UNIT_COMMANDS = {
    "start",
    "stop",
    "restart",
    "reload",
    "try-restart",
    "reload-or-restart",
    "reload-or-try-restart",
}
UNIT_NAME_RE = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.(service|timer|mount|socket|path|target)$")
PERMISSIONS_RE = re.compile(r"^0?[0-7]{3,4}$")

Outcome = tuple[bool, str]


@dataclass(frozen=True)
class ValidationResult:
    file: str  # relative to the build directory
    validator: str  # short name shown to users
    ok: bool
    detail: str  # one line; on failure the validator's most relevant error line


class MissingTool(Exception):
    """A validator program is not installed."""

    def __init__(self, program: str, package: str):
        super().__init__(f"{program} not found: apt-get install {package}")


class Cancelled(Exception):
    """Validation was interrupted (Ctrl-C); running servers are being stopped."""


# ------------------------------------------------------------- processes


def _stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM the process by PID, SIGKILL it if it has not exited after STOP_GRACE."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


class Processes:
    """Every process a validation run starts, so that all can be stopped on Ctrl-C."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[Any]] = set()
        self.cancelled = threading.Event()

    @contextlib.contextmanager
    def started(self, argv: Sequence[str], **popen: Any) -> Iterator[subprocess.Popen[Any]]:
        if self.cancelled.is_set():
            raise Cancelled()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, **popen)
        with self._lock:
            self._running.add(proc)
        try:
            yield proc
        finally:
            _stop(proc)
            with self._lock:
                self._running.discard(proc)

    def run(
        self, argv: Sequence[str], timeout: float = COMMAND_TIMEOUT, **popen: Any
    ) -> subprocess.CompletedProcess[str]:
        """Like subprocess.run(capture_output=True, text=True), but stoppable by stop_all."""
        with self.started(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
        ) as proc:
            stdout, stderr = proc.communicate(timeout=timeout)
        if self.cancelled.is_set():
            raise Cancelled()
        return subprocess.CompletedProcess(list(argv), proc.returncode, stdout, stderr)

    def stop_all(self) -> None:
        self.cancelled.set()
        with self._lock:
            running = list(self._running)
        for proc in running:
            _stop(proc)


def _need(program: str, package: str) -> str:
    found = shutil.which(program)
    if not found:
        raise MissingTool(program, package)
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http_status(url: str, ca_file: Path | None = None) -> int | None:
    """GET ``url`` without any proxy (HTTPS: trusting only ``ca_file``); the status
    code, or None if nothing answers."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if ca_file is not None:
        context = ssl.create_default_context(cafile=str(ca_file))
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=1.0) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def _wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen[Any], processes: Processes
) -> bool:
    """Poll ``ready`` until it holds, the process exits, or SERVER_START_TIMEOUT passes."""
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if processes.cancelled.is_set():
            raise Cancelled()
        if ready():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.1)
    return False


# ---------------------------------------------------------- output lines


def _lines(*texts: str) -> list[str]:
    return [line.strip() for text in texts for line in text.splitlines() if line.strip()]


def _relevant_line(text: str, markers: Sequence[str] = ()) -> str:
    """The first line holding the earliest-listed marker, else the last non-empty line."""
    lines = _lines(text)
    for marker in markers:
        for line in lines:
            if marker.lower() in line.lower():
                return line
    return lines[-1] if lines else "(no output)"


# ------------------------------------------------------------- context


@dataclass
class Context:
    build: Path
    spec: LabSpec
    scratch_root: Path
    processes: Processes = field(default_factory=Processes)

    def scratch(self, name: str) -> Path:
        """A fresh private directory for one check, removed with the whole run."""
        path = Path(tempfile.mkdtemp(prefix=re.sub(r"\W", "_", name) + "-", dir=self.scratch_root))
        path.chmod(0o700)
        return path


Check = Callable[[Path, Context], Outcome]


# ------------------------------------------------------------- Vagrantfile


def _host_has_nfsd() -> bool:
    """Vagrant's own test on a host without systemd: `modinfo nfsd` or nfsd in /proc."""
    modinfo = shutil.which("modinfo") or "/sbin/modinfo"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        if subprocess.run([modinfo, "nfsd"], capture_output=True, timeout=10).returncode == 0:
            return True
    with contextlib.suppress(OSError):
        return "nfsd" in Path("/proc/filesystems").read_text()
    return False


def _systemd_host() -> bool:
    """Vagrant asks systemctl about NFS instead of modinfo when PID 1 is systemd."""
    with contextlib.suppress(OSError):
        return Path("/proc/1/comm").read_text().strip() == "systemd"
    return False


def _modinfo_shim(directory: Path) -> Path:
    """A `modinfo` that answers only Vagrant's `modinfo nfsd` question."""
    shim = directory / "modinfo"
    shim.write_text('#!/bin/sh\n[ "$*" = nfsd ] && exit 0\nexit 1\n')
    shim.chmod(0o755)
    return directory


def _vagrant_home() -> Path | None:
    """The user's Vagrant home if it exists: its plugins change what the Vagrantfile does."""
    home = Path(os.environ.get("VAGRANT_HOME") or Path.home() / ".vagrant.d")
    return home if home.is_dir() else None


def check_vagrantfile(path: Path, ctx: Context) -> Outcome:
    vagrant = _need("vagrant", "vagrant")
    scratch = ctx.scratch("vagrant")
    env = dict(os.environ, VAGRANT_CHECKPOINT_DISABLE="1")
    # Keep the build directory clean: Vagrant writes its .vagrant/ dotfile dir on validate.
    env["VAGRANT_DOTFILE_PATH"] = str(scratch / "dotfile")
    if _vagrant_home() is None:  # don't create ~/.vagrant.d just to validate
        env["VAGRANT_HOME"] = str(scratch / "home")
    note = ""
    if not _systemd_host() and not _host_has_nfsd():
        # Without an NFS server Vagrant refuses NFS synced folders before it checks
        # anything else; answer its host check so the Vagrantfile itself is validated.
        shim_dir = _modinfo_shim(scratch)
        env["PATH"] = f"{shim_dir}{os.pathsep}{env.get('PATH', '')}"
        note = " (host has no nfsd: Vagrant's host NFS check answered for validation)"
    proc = ctx.processes.run(
        [vagrant, "validate", "--ignore-provider"],
        cwd=path.parent,
        env=env,
        timeout=VAGRANT_TIMEOUT,
    )
    if proc.returncode == 0:
        return True, "ok" + note
    # "<path>/Vagrantfile:69: syntax error, ..." or "* The following settings shouldn't exist"
    detail = _relevant_line(proc.stderr or proc.stdout, ["Vagrantfile:", "* ", "error"])
    if "support NFS" in detail:
        detail += " (install nfs-kernel-server)"
    return False, detail + note


# ---------------------------------------------------------------- Ignition


def check_ignition(path: Path, ctx: Context) -> Outcome:
    tool = _need("ignition-validate", "ignition")
    proc = ctx.processes.run([tool, str(path)])
    output = _lines(proc.stdout, proc.stderr)
    # ignition-validate prints warnings with exit code 0; the kit renders warning-free files.
    if proc.returncode == 0 and not output:
        return True, "ok"
    return False, output[0] if output else f"exit code {proc.returncode}"


# ------------------------------------------------------------ cloud-config


def _type_problem(where: str, value: Any, expected: type) -> str | None:
    if isinstance(value, expected):
        return None
    return f"{where}: expected {expected.__name__}, got {type(value).__name__}"


def _mapping_problems(
    where: str, value: Any, schema: dict[str, type], required: set[str]
) -> list[str]:
    """Unknown keys, missing required keys and wrong types of one mapping."""
    if not isinstance(value, dict):
        return [f"{where}: expected a mapping, got {type(value).__name__}"]
    problems = [f"{where}.{key}: unknown key" for key in value if key not in schema]
    problems += [f"{where}.{key}: missing" for key in sorted(required - value.keys())]
    for key, expected in schema.items():
        if key in value:
            problem = _type_problem(f"{where}.{key}", value[key], expected)
            if problem:
                problems.append(problem)
    return problems


def _write_file_problems(index: int, item: Any) -> list[str]:
    where = f"write_files[{index}]"
    schema = {"path": str, "permissions": str, "owner": str, "content": str}
    problems = _mapping_problems(where, item, schema, {"path", "content"})
    if problems:
        return problems
    if not item["path"].startswith("/"):
        problems.append(f"{where}.path: {item['path']!r} is not absolute")
    if "permissions" in item and not PERMISSIONS_RE.match(item["permissions"]):
        problems.append(f"{where}.permissions: {item['permissions']!r} is not an octal mode")
    return problems


def _unit_problems(index: int, unit: Any) -> list[str]:
    where = f"coreos.units[{index}]"
    schema = {"name": str, "command": str, "enable": bool, "content": str}
    problems = _mapping_problems(where, unit, schema, {"name"})
    if problems:
        return problems
    if not UNIT_NAME_RE.match(unit["name"]):
        problems.append(f"{where}.name: {unit['name']!r} is not a systemd unit name")
    if "command" in unit and unit["command"] not in CLOUD_CONFIG_UNIT_COMMANDS:
        problems.append(f"{where}.command: {unit['command']!r} is not a systemctl command")
    return problems


def cloud_config_problems(text: str, hostname: str) -> list[str]:
    """What coreos-cloudinit would reject or ignore in the keys the kit emits."""
    if not text.startswith("#cloud-config\n"):
        return ["line 1: must be '#cloud-config' (coreos-cloudinit ignores the file otherwise)"]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [f"not valid YAML: {str(exc).splitlines()[0]}"]
    schema = {"hostname": str, "ssh_authorized_keys": list, "write_files": list, "coreos": dict}
    problems = _mapping_problems("cloud-config", data, schema, {"hostname"})
    if problems:
        return problems
    if data["hostname"] != hostname:
        problems.append(f"hostname: {data['hostname']!r} is not the node's name {hostname!r}")
    for i, key in enumerate(data.get("ssh_authorized_keys", [])):
        problems += filter(None, [_type_problem(f"ssh_authorized_keys[{i}]", key, str)])
    for i, item in enumerate(data.get("write_files", [])):
        problems += _write_file_problems(i, item)
    coreos = data.get("coreos", {})
    problems += _mapping_problems("coreos", coreos, {"units": list}, set())
    for i, unit in enumerate(coreos.get("units", []) if isinstance(coreos, dict) else []):
        problems += _unit_problems(i, unit)
    return problems


def check_cloud_config(path: Path, ctx: Context) -> Outcome:
    hostname = path.name.removesuffix(".cloud-config.yml")
    problems = cloud_config_problems(path.read_text(), hostname)
    if problems:
        return False, problems[0]
    units = yaml.safe_load(path.read_text()).get("coreos", {}).get("units", [])
    with_content = [u for u in units if "content" in u]
    if not with_content:
        return True, "ok"
    # Units the file defines must pass systemd too (units without content ship with the OS).
    unit_dir = ctx.scratch("cloud-config-units")
    for unit in with_content:
        (unit_dir / unit["name"]).write_text(unit["content"])
    ok, detail = _systemd_verify([unit_dir / u["name"] for u in with_content], ctx)
    if not ok:
        return False, f"unit content: {detail}"
    return True, f"ok ({len(with_content)} unit contents pass systemd-analyze verify)"


# ------------------------------------------------------------------ stacks


@functools.cache
def docker_with_stack_config() -> str | None:
    """The first docker client that has `docker stack config` (client-side, no engine)."""
    for candidate in DOCKER_CLIENTS:
        client = shutil.which(candidate)
        if not client:
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            probe = subprocess.run(
                [client, "stack", "config", "--help"], capture_output=True, text=True, timeout=30
            )
            if "docker stack config" in probe.stdout:
                return client
    return None


def check_stack(path: Path, ctx: Context) -> Outcome:
    docker = docker_with_stack_config()
    if docker is None:
        return False, (
            "no docker client with `docker stack config` (Debian 12's docker.io 20.10 lacks it): "
            "install docker-ce-cli from download.docker.com"
        )
    proc = ctx.processes.run([docker, "stack", "config", "-c", str(path)])
    problems = _lines(proc.stderr)
    # Warnings such as "Ignoring unsupported options" mean part of the file has no effect.
    if proc.returncode == 0 and not problems:
        return True, f"ok ({docker})"
    return False, problems[0] if problems else f"exit code {proc.returncode}"


# ---------------------------------------------------------------- registry


def _registry_env(port: int, spec: LabSpec, secrets: Path) -> dict[str, str]:
    # REGISTRY_<SECTION>_<KEY> variables override the file; drop the user's, set only the
    # listen address, so the rendered file itself is what runs (no copy holding secrets).
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    # A custom CA bundle makes the S3 driver panic at start-up (LoadCustomCABundleError:
    # its HTTP transport cannot take one); the lab's MinIO is plain HTTP anyway.
    env.pop("AWS_CA_BUNDLE", None)
    env["REGISTRY_HTTP_ADDR"] = f"127.0.0.1:{port}"
    if spec.registry.tls:  # the node's paths of the certificate and htpasswd, from here
        env["REGISTRY_HTTP_TLS_CERTIFICATE"] = str(secrets / "registry.crt")
        env["REGISTRY_HTTP_TLS_KEY"] = str(secrets / "registry.key")
        env["REGISTRY_AUTH_HTPASSWD_PATH"] = str(secrets / "registry.htpasswd")
    return env


def check_registry(path: Path, ctx: Context) -> Outcome:
    # The registry parses the whole config and builds the S3 driver, the Redis cache and
    # the health checks before it listens; none of that contacts MinIO or Redis (the
    # storage health check first runs after its interval), so /v2/ answers 200 although
    # the lab's endpoints are not reachable from here (verified with both refused). That
    # is the config check we want; a real S3 endpoint (moto) would add nothing the binary
    # checks at start-up.
    binary = _need("docker-registry", "docker-registry")
    scratch = ctx.scratch("registry")
    port = _free_port()
    secrets = ctx.build / SECRETS_DIRNAME
    tls = ctx.spec.registry.tls
    # With TLS: the lab CA verifies the certificate (by 127.0.0.1) and /v2/ asks for the
    # push account's password (401) before anything else.
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/v2/"
    wanted = 401 if tls else 200
    ca_file = secrets / "ca.crt" if tls else None
    log_path = scratch / "registry.log"
    with (
        log_path.open("wb") as log,
        ctx.processes.started(
            [binary, "serve", str(path)],
            env=_registry_env(port, ctx.spec, secrets),
            cwd=scratch,
            stdout=log,
            stderr=subprocess.STDOUT,
        ) as proc,
    ):
        answered = _wait_until(lambda: _http_status(url, ca_file) == wanted, proc, ctx.processes)
        exited = proc.poll()
    if answered:
        how = "HTTPS verified with the lab CA, " if tls else ""
        return True, f"ok (serve: {how}GET /v2/ answered {wanted})"
    log_text = log_path.read_text(errors="replace")
    if exited is None:
        return False, f"GET /v2/ did not answer {wanted} within {SERVER_START_TIMEOUT:.0f}s"
    return False, _relevant_line(log_text, ["panic:", "level=fatal", "level=error", "error"])


# ------------------------------------------------------------------- redis


def redis_bytes(size: str) -> int:
    """Redis's reading of a memory size such as 256mb (kb/mb/gb are powers of 1024)."""
    match = re.fullmatch(r"(\d+)(kb|mb|gb|k|m|g)?", size.lower())
    if not match:
        raise ValueError(f"{size!r} is not a Redis memory size")
    units = {None: 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3,
             "gb": 1024**3}  # fmt: skip
    return int(match[1]) * units[match[2]]


def _redis_get(cli: str, port: int, key: str, ctx: Context) -> str:
    proc = ctx.processes.run([cli, "-h", "127.0.0.1", "-p", str(port), "CONFIG", "GET", key])
    values = proc.stdout.splitlines()
    return values[1] if len(values) > 1 else ""


def check_redis(path: Path, ctx: Context) -> Outcome:
    server = _need("redis-server", "redis-server")
    cli = _need("redis-cli", "redis-tools")
    scratch = ctx.scratch("redis")
    port = _free_port()
    # Command-line options override the file: listen on a free loopback port only,
    # stay in the foreground, keep any file redis writes inside the scratch dir.
    overrides = ["--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no",
                 "--dir", str(scratch), "--logfile", "", "--pidfile", ""]  # fmt: skip
    log_path = scratch / "redis.log"

    def pong() -> bool:
        ping = ctx.processes.run([cli, "-h", "127.0.0.1", "-p", str(port), "PING"], timeout=5)
        return ping.stdout.strip() == "PONG"

    with (
        log_path.open("wb") as log,
        ctx.processes.started(
            [server, str(path), *overrides], cwd=scratch, stdout=log, stderr=subprocess.STDOUT
        ) as proc,
    ):
        if not _wait_until(pong, proc, ctx.processes):
            text = log_path.read_text(errors="replace")
            quoted = _relevant_line(text, [">>>"])
            return False, f"{_relevant_line(text)}: {quoted}" if ">>>" in quoted else quoted
        policy = _redis_get(cli, port, "maxmemory-policy", ctx)
        maxmemory = _redis_get(cli, port, "maxmemory", ctx)
    if policy != "allkeys-lru":
        return False, f"maxmemory-policy is {policy!r}, a registry cache needs allkeys-lru"
    expected = redis_bytes(ctx.spec.redis.maxmemory)
    if maxmemory != str(expected):
        return False, f"maxmemory is {maxmemory} bytes, lab.yaml says {ctx.spec.redis.maxmemory}"
    return True, "ok (started, PONG, maxmemory-policy allkeys-lru)"


# ------------------------------------------------------------ load balancers


def _with_tls_files_here(path: Path, ctx: Context, name: str) -> Path:
    """``path``, or a private copy that finds the certificate, key and CA the container
    sees under LB_TLS_DIR in the build's secrets (HAProxy and nginx open them at -c/-t)."""
    text = path.read_text()
    if LB_TLS_DIR + "/" not in text:
        return path
    copy = ctx.scratch(name) / path.name
    copy.write_text(text.replace(LB_TLS_DIR + "/", f"{ctx.build / SECRETS_DIRNAME}/"))
    copy.chmod(0o600)
    return copy


def check_haproxy(path: Path, ctx: Context) -> Outcome:
    haproxy = _need("haproxy", "haproxy")
    path = _with_tls_files_here(path, ctx, "haproxy")
    proc = ctx.processes.run([haproxy, "-c", "-f", str(path)])
    # [NOTICE] lines are informational; warnings are real problems in a rendered file.
    problems = [
        re.sub(r"\s+\(\d+\) : ", " ", line)
        for line in _lines(proc.stderr)
        if line.startswith(("[ALERT]", "[WARNING]"))
    ]
    if proc.returncode == 0 and not problems:
        return True, "ok"
    return False, problems[0] if problems else _relevant_line(proc.stderr + proc.stdout)


def check_nginx(path: Path, ctx: Context) -> Outcome:
    nginx = _need("nginx", "nginx")
    prefix = ctx.scratch("nginx")
    path = _with_tls_files_here(path, ctx, "nginx-tls")
    # -p: relative paths resolve in a scratch dir; -e stderr: don't open the system error
    # log; -t opens no sockets and writes no pid file.
    proc = ctx.processes.run(
        [nginx, "-t", "-q", "-p", f"{prefix}/", "-e", "stderr", "-c", str(path.resolve())]
    )
    problems = _lines(proc.stderr)  # -q: only warnings and errors are printed
    if proc.returncode == 0 and not problems:
        return True, "ok"
    line = _relevant_line(proc.stderr, ["[emerg]", "[alert]", "[crit]", "[error]", "[warn]"])
    return False, re.sub(r"^[\d/]+ [\d:]+ (\[\w+\]) \d+#\d+: ", r"\1 ", line)  # drop time, pid


# --------------------------------------------------------------- keepalived


def keepalived_interfaces(text: str) -> list[str]:
    """The interfaces a keepalived config names (``interface X``, ``... dev X``)."""
    names = re.findall(r"^\s*interface\s+(\S+)", text, re.M)
    names += re.findall(r"\sdev\s+(\S+)", text)
    return sorted(set(names))


def check_keepalived(path: Path, ctx: Context) -> Outcome:
    keepalived = _need("keepalived", "keepalived")
    unshare = _need("unshare", "util-linux")
    ip = _need("ip", "iproute2")
    if os.geteuid() != 0:
        # In a user namespace root's files look foreign, and keepalived then refuses
        # the track script as unsafe: the check would fail for the wrong reason.
        return False, "keepalived -t needs root here: it runs a track script only if root owns it"
    # keepalived refuses a config whose interface is missing, and the nodes' NIC is not
    # this host's: check it in a scratch network namespace that has the interface.
    interfaces = keepalived_interfaces(path.read_text())
    links = [
        f"{ip} link add {shlex.quote(name)} type veth peer name kaval-peer{i}"
        for i, name in enumerate(interfaces)
    ]
    script = " && ".join([*links, 'exec "$@"'])
    proc = ctx.processes.run(
        [unshare, "--net", "sh", "-c", script, "sh", keepalived, "-t", "-f", str(path)]
    )
    # keepalived -t prints only problems (warnings included): any line fails the file.
    problems = _lines(proc.stderr, proc.stdout)
    if proc.returncode == 0 and not problems:
        return True, f"ok (in a network namespace with {', '.join(interfaces)})"
    return False, _relevant_line("\n".join(problems), ["(", "error", "warning"])


# ----------------------------------------------------------------- traefik


@functools.cache
def _schema_validator(schema_path: Path) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_path.read_text())
    if "additionalProperties" not in schema and "properties" in schema:
        # Traefik refuses unknown top-level keys of its static config ("field not found"),
        # but the schema's root alone allows them; close the root in memory (the shipped
        # file stays unmodified).
        schema = {**schema, "additionalProperties": False}
    return jsonschema.Draft7Validator(schema)


def check_against_schema(path: Path, schema_path: Path) -> Outcome:
    if not schema_path.is_file():
        return False, f"schema {schema_path.name} missing from {SCHEMA_DIR}"
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return False, f"not valid YAML: {str(exc).splitlines()[0]}"
    error = jsonschema.exceptions.best_match(_schema_validator(schema_path).iter_errors(data))
    if error is None:
        return True, "ok"
    return False, f"{error.json_path}: {error.message}"


def check_traefik_static(path: Path, ctx: Context) -> Outcome:
    return check_against_schema(path, TRAEFIK_STATIC_SCHEMA)


def check_traefik_dynamic(path: Path, ctx: Context) -> Outcome:
    return check_against_schema(path, TRAEFIK_DYNAMIC_SCHEMA)


# ----------------------------------------------------------------- systemd


def _systemd_verify(paths: list[Path], ctx: Context) -> Outcome:
    tool = _need("systemd-analyze", "systemd")
    # --man=no: Documentation= pages live on the nodes, not on this host.
    proc = ctx.processes.run([tool, "verify", "--man=no", *map(str, paths)])
    names = {p.name for p in paths}
    # systemd-analyze also reports on host units it loads; only lines about ours count.
    # Unknown keys etc. are "ignoring" warnings with exit code 0: they still fail here.
    ours = [line for line in _lines(proc.stderr, proc.stdout) if any(n in line for n in names)]
    if proc.returncode == 0 and not ours:
        return True, "ok"
    detail = ours[0] if ours else _relevant_line(proc.stderr)
    if "/usr/bin/docker is not executable" in detail:
        detail += " (verify checks ExecStart= binaries on this host: apt-get install docker.io)"
    return False, detail


def check_unit(path: Path, ctx: Context) -> Outcome:
    # One unit per run: units/registry.service (fleet) and units/systemd/registry.service
    # share a name, and a per-file run attributes every message to its file.
    return _systemd_verify([path], ctx)


# ------------------------------------------------------------ node files


def check_shell(path: Path, ctx: Context) -> Outcome:
    bash = _need("bash", "bash")
    proc = ctx.processes.run([bash, "-n", str(path)])
    if proc.returncode == 0 and not proc.stderr.strip():
        return True, "ok"
    return False, _relevant_line(proc.stderr)


def check_daemon_json(path: Path, ctx: Context) -> Outcome:
    # dockerd --validate needs Docker 23+; Debian 12's dockerd 20.10 has none.
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        return False, f"not valid JSON: {exc}"
    if not isinstance(data, dict):
        return False, "must be a JSON object"
    return True, "ok (JSON object; this host's dockerd has no --validate)"


# ------------------------------------------------------------- the plan


VAGRANT = "vagrant validate"
IGNITION = "ignition-validate"
CLOUD_CONFIG = "cloud-config keys"
STACK = "docker stack config"
REGISTRY = "docker-registry serve"
REDIS = "redis-server"
HAPROXY = "haproxy -c"
NGINX = "nginx -t"
KEEPALIVED = "keepalived -t"
TRAEFIK_STATIC = "traefik-v3 schema"
TRAEFIK_DYNAMIC = "traefik-v3-file-provider schema"
SYSTEMD = "systemd-analyze verify"
SHELL = "bash -n"
JSON = "json"


def expected_units(spec: LabSpec) -> list[str]:
    units = [mount_unit_name(spec.nfs.mount), "registry.service"]
    time_units = ["date.service", "date.timer"] if spec.time_sync.enabled else []
    # units/libvirt/: what the Debian VMs of the libvirt path install (no registry unit)
    libvirt = [mount_unit_name(spec.nfs.mount), *time_units]
    return [f"units/systemd/{name}" for name in units + time_units] + [
        f"units/libvirt/{name}" for name in libvirt
    ]


def plan(build: Path, spec: LabSpec) -> list[tuple[str, str, Check]]:
    """(file, validator name, check) for every file the spec renders, sorted by file."""
    jobs: list[tuple[str, str, Check]] = [
        ("Vagrantfile", VAGRANT, check_vagrantfile),
        ("stacks/minio.yaml", STACK, check_stack),
        ("stacks/busybox.yaml", STACK, check_stack),
        ("redis/redis.conf", REDIS, check_redis),
        ("lb/haproxy.cfg", HAPROXY, check_haproxy),
        ("lb/nginx.conf", NGINX, check_nginx),
        ("lb/traefik.yml", TRAEFIK_STATIC, check_traefik_static),
        ("lb/traefik-dynamic.yml", TRAEFIK_DYNAMIC, check_traefik_dynamic),
        ("units/registry.service", SYSTEMD, check_unit),
        ("files/docker-aliases.sh", SHELL, check_shell),
        ("files/daemon.json", JSON, check_daemon_json),
    ]
    if spec.loadbalancer.vip is not None:
        jobs += [(keepalived_config(n.name), KEEPALIVED, check_keepalived) for n in spec.lb_nodes]
    for node in spec.nodes:
        jobs += [
            (f"{node.name}.ign", IGNITION, check_ignition),
            (f"{node.name}.cloud-config.yml", CLOUD_CONFIG, check_cloud_config),
            (f"registry/{node.name}.yml", REGISTRY, check_registry),
        ]
    # Expected units, plus any other unit the renderer put there.
    rendered_units = {
        p.relative_to(build).as_posix()
        for p in [*build.glob("units/systemd/*"), *build.glob("units/libvirt/*")]
    }
    for unit in sorted(set(expected_units(spec)) | rendered_units):
        jobs.append((unit, SYSTEMD, check_unit))
    return sorted(jobs, key=lambda job: (job[0], job[1]))


# ------------------------------------------------------------- secrets


def _secret_values(build: Path) -> list[str]:
    """Every secret of the lab (and each line of multi-line ones), longest first."""
    values: set[str] = set()
    for secret in (build / SECRETS_DIRNAME).glob("*"):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = secret.read_text().strip()
            values.update(v for v in [text, *text.splitlines()] if len(v.strip()) >= 8)
    return sorted(values, key=len, reverse=True)


def _redact(text: str, secrets: list[str]) -> str:
    for value in secrets:
        text = text.replace(value, "***")
    return text


# ------------------------------------------------------------------ run


def _run_check(file: str, validator: str, check: Check, ctx: Context) -> ValidationResult:
    path = ctx.build / file
    if not path.is_file():
        return ValidationResult(
            file, validator, False, "missing: not rendered (run inv lab.render)"
        )
    try:
        ok, detail = check(path, ctx)
    except MissingTool as exc:
        ok, detail = False, str(exc)
    except subprocess.TimeoutExpired as exc:
        ok, detail = False, f"{Path(str(exc.cmd[0])).name} timed out after {exc.timeout:.0f}s"
    except Cancelled:
        ok, detail = False, "interrupted"
    except Exception as exc:  # a crashing check must not hide the other results
        ok, detail = False, f"validator error: {type(exc).__name__}: {exc}"
    return ValidationResult(file, validator, ok, " ".join(detail.split()))


def validate(build: Path, spec: LabSpec) -> list[ValidationResult]:
    """Run every rendered file's real consumer; results sorted by file."""
    build = Path(build).resolve()
    secrets = _secret_values(build)
    with tempfile.TemporaryDirectory(prefix="lab-validate-") as scratch:
        ctx = Context(build, spec, Path(scratch))
        with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
            futures = [pool.submit(_run_check, *job, ctx) for job in plan(build, spec)]
            try:
                results = [future.result() for future in futures]
            except BaseException:  # Ctrl-C: stop every process we started, by PID
                ctx.processes.stop_all()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    return [
        ValidationResult(r.file, r.validator, r.ok, _redact(r.detail, secrets)) for r in results
    ]


def all_ok(results: list[ValidationResult]) -> bool:
    return bool(results) and all(r.ok for r in results)


def print_results(results: list[ValidationResult], console: Console | None = None) -> bool:
    """Print a table (file, validator, result) and the overall verdict; return it."""
    console = console or make_console()
    table = Table(title="lab.validate")
    # On narrow terminals long names fold instead of being cut off with an ellipsis.
    table.add_column("file", style="bold", overflow="fold")
    table.add_column("validator", overflow="fold")
    table.add_column("result")
    for result in results:
        # Details of passing checks start with "ok"; failures get a FAIL in front.
        detail = escape(result.detail)
        verdict = f"[green]{detail}[/]" if result.ok else f"[red]FAIL[/] {detail}"
        table.add_row(escape(result.file), escape(result.validator), verdict)
    console.print(table)
    ok = all_ok(results)
    failed = sum(not r.ok for r in results)
    if ok:
        console.print(f"[green]all {len(results)} files valid[/]")
    else:
        console.print(f"[red]{failed} of {len(results)} checks failed[/]")
    return ok
