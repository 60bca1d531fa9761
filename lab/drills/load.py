"""Load during a drill: pulls and pushes through the lab's front address, every one
recorded with its start, end and result.

Images are tiny and distinct (one random layer, a config, a schema-2 manifest),
pushed and pulled with the registry's HTTP API from the host, so the load costs
the lab little and measures the registry path, not the host's docker. A push is
*acknowledged* when the manifest PUT answers 201 with a digest; only those count
when nothing may be lost.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import ssl
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REQUEST_TIMEOUT = 15.0  # a request that hangs longer counts as failed (a user gives up)
PULL_REPO = "lab/drill-seed"
PUSH_REPO = "lab/drill"


class RegistryFailure(Exception):
    """One registry request did not give the expected answer."""


@dataclass(frozen=True)
class Image:
    layer: bytes
    config: bytes

    @property
    def manifest(self) -> bytes:
        def descriptor(media_type: str, blob: bytes) -> dict[str, object]:
            return {"mediaType": media_type, "size": len(blob), "digest": sha256(blob)}

        manifest = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": descriptor(CONFIG_V1, self.config),
            "layers": [descriptor(LAYER_GZIP, self.layer)],
        }
        return json.dumps(manifest, sort_keys=True).encode()

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def make_image(label: str, size: int = 2048) -> Image:
    """A one-file image whose content is random: every push is a new image."""
    payload = os.urandom(size)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        info = tarfile.TarInfo(f"drill/{label}")
        info.size, info.mtime = len(payload), 0
        tar.addfile(info, io.BytesIO(payload))
    layer = gzip.compress(tar_bytes.getvalue(), mtime=0)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"org.ha-registry-lab.drill": label}},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar_bytes.getvalue())]},
    }
    return Image(layer, json.dumps(config, sort_keys=True).encode())


@dataclass(frozen=True)
class Access:
    """How the host reaches a lab whose registries speak TLS: HTTPS trusting only the lab
    CA, logged in with an account (basic auth, as docker does)."""

    ca_file: Path
    user: str
    password: str
    context: ssl.SSLContext = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One context for every request: loading the CA per request would cost the load.
        object.__setattr__(self, "context", ssl.create_default_context(cafile=str(self.ca_file)))

    @property
    def authorization(self) -> str:
        return "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()


class Registry:
    """The registry HTTP API at ``address`` (host:port), one connection per request;
    HTTPS with an account when ``access`` is given (registry.tls), else plain HTTP."""

    def __init__(
        self, address: str, timeout: float = REQUEST_TIMEOUT, access: Access | None = None
    ):
        self.address = address
        self.timeout = timeout
        self.access = access

    def _connection(self) -> http.client.HTTPConnection:
        host, _, port = self.address.rpartition(":")
        if self.access is None:
            return http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        return http.client.HTTPSConnection(
            host, int(port), timeout=self.timeout, context=self.access.context
        )

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = self._connection()
        headers = dict(headers or {})
        if self.access is not None:
            headers["Authorization"] = self.access.authorization
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        except OSError as exc:
            raise RegistryFailure(f"{method} {path}: {type(exc).__name__}") from None
        finally:
            conn.close()

    def _expect(self, status: int, wanted: int, what: str) -> None:
        if status != wanted:
            raise RegistryFailure(f"{what}: HTTP {status}")

    def push_blob(self, repo: str, blob: bytes) -> None:
        digest = sha256(blob)
        status, _, _ = self._request("HEAD", f"/v2/{repo}/blobs/{digest}")
        if status == 200:
            return
        status, headers, _ = self._request("POST", f"/v2/{repo}/blobs/uploads/")
        self._expect(status, 202, "start upload")
        location = headers.get("location", "")
        path = location.split(self.address, 1)[-1] if "://" in location else location
        separator = "&" if "?" in path else "?"
        status, _, _ = self._request(
            "PUT", f"{path}{separator}digest={digest}", blob,
            {"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        self._expect(status, 201, "finish upload")

    def push(self, repo: str, tag: str, image: Image) -> str:
        """Push ``image`` as ``repo:tag``; the digest the registry acknowledged."""
        self.push_blob(repo, image.layer)
        self.push_blob(repo, image.config)
        status, headers, _ = self._request(
            "PUT", f"/v2/{repo}/manifests/{tag}", image.manifest, {"Content-Type": MANIFEST_V2}
        )
        self._expect(status, 201, "put manifest")
        return headers.get("docker-content-digest", "")

    def pull(self, repo: str, tag: str) -> str:
        """Fetch the manifest and every blob, checking each digest; the manifest's digest."""
        status, headers, manifest = self._request(
            "GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_V2}
        )
        self._expect(status, 200, "get manifest")
        parsed = json.loads(manifest)
        for descriptor in [parsed["config"], *parsed["layers"]]:
            status, _, blob = self._request("GET", f"/v2/{repo}/blobs/{descriptor['digest']}")
            self._expect(status, 200, "get blob")
            if sha256(blob) != descriptor["digest"]:
                raise RegistryFailure(f"blob {descriptor['digest'][:19]} came back different")
        return headers.get("docker-content-digest") or sha256(manifest)

    def answers(self) -> bool:
        try:
            return self._request("GET", "/v2/")[0] == 200
        except RegistryFailure:
            return False


@dataclass
class Outcome:
    """One pull or push: when it started and ended (seconds since the load began)."""

    kind: str  # "pull" | "push"
    start: float
    end: float
    ok: bool
    detail: str = ""
    ref: str = ""
    digest: str = ""


@dataclass
class LoadPlan:
    pulls_per_second: float = 10.0
    pushes_per_second: float = 2.0
    seed_images: int = 5
    max_in_flight: int = 32


@dataclass
class Load:
    """Steady load until stopped: a scheduler thread submits operations on a fixed
    clock (a hanging request never slows the rate), workers record outcomes."""

    registry: Registry
    plan: LoadPlan = field(default_factory=LoadPlan)
    outcomes: list[Outcome] = field(default_factory=list)
    seeded: list[tuple[str, str]] = field(default_factory=list)  # (tag, digest)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = 0.0
        self._scheduler: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=self.plan.max_in_flight)
        self._run_id = os.urandom(3).hex()

    def seed(self) -> None:
        """Images that the pulls fetch, pushed before the drill begins."""
        for i in range(self.plan.seed_images):
            tag = f"seed-{self._run_id}-{i}"
            self.seeded.append((tag, self.registry.push(PULL_REPO, tag, make_image(tag))))

    def now(self) -> float:
        return time.monotonic() - self._started

    def start(self, max_seconds: float) -> None:
        self._started = time.monotonic()
        self._scheduler = threading.Thread(target=self._schedule, args=(max_seconds,), daemon=True)
        self._scheduler.start()

    def stop(self) -> list[Outcome]:
        self._stop.set()
        if self._scheduler:
            self._scheduler.join()
        self._pool.shutdown(wait=True)
        with self._lock:
            return sorted(self.outcomes, key=lambda o: o.start)

    def acknowledged(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.kind == "push" and o.ok and o.digest]

    def _schedule(self, max_seconds: float) -> None:
        pull_every = 1 / self.plan.pulls_per_second if self.plan.pulls_per_second else None
        push_every = 1 / self.plan.pushes_per_second if self.plan.pushes_per_second else None
        next_pull, next_push, count = 0.0, 0.0, 0
        while not self._stop.is_set() and self.now() < max_seconds:
            now = self.now()
            if pull_every and now >= next_pull:
                self._pool.submit(self._pull, count)
                next_pull += pull_every
            if push_every and now >= next_push:
                self._pool.submit(self._push, count)
                next_push += push_every
            count += 1
            self._stop.wait(0.01)

    def _pull(self, count: int) -> None:
        tag, want = self.seeded[count % len(self.seeded)]
        start = self.now()
        try:
            got = self.registry.pull(PULL_REPO, tag)
            ok, detail = got == want, "" if got == want else f"digest {got[:19]} != {want[:19]}"
        except (RegistryFailure, ValueError, KeyError) as exc:
            ok, detail, got = False, str(exc), ""
        self._record(Outcome("pull", start, self.now(), ok, detail, f"{PULL_REPO}:{tag}", got))

    def _push(self, count: int) -> None:
        tag = f"{self._run_id}-{count}"
        start = self.now()
        try:
            digest = self.registry.push(PUSH_REPO, tag, make_image(tag))
            ok, detail = bool(digest), "" if digest else "no digest in the answer"
        except RegistryFailure as exc:
            ok, detail, digest = False, str(exc), ""
        self._record(Outcome("push", start, self.now(), ok, detail, f"{PUSH_REPO}:{tag}", digest))

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)


def outcome_dicts(outcomes: list[Outcome]) -> list[dict[str, object]]:
    return [asdict(o) for o in outcomes]
