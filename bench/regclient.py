"""A small registry HTTP API client for the benchmarks: push and pull timed images.

Plain HTTP by default; HTTPS when given a CA file (the lab's own CA once the
registry has TLS), and HTTP basic auth when given credentials (sent with every
request, as docker does after its first 401). One keep-alive connection per
client, as docker's pushes and pulls reuse theirs, so what is measured is the
transfer and the path through the load balancer, not a TCP handshake per request.
Blobs are read in 1 MiB chunks and counted, not kept.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_V1 = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CHUNK = 1 << 20
TIMEOUT = 120.0


class RegistryError(Exception):
    """A registry answered something other than what the API promises."""


@dataclass(frozen=True)
class Access:
    """How to reach registries: TLS trust and credentials (all optional)."""

    ca_file: str | None = None
    user: str | None = None
    password: str | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.ca_file else "http"

    def headers(self) -> dict[str, str]:
        if not self.user:
            return {}
        token = base64.b64encode(f"{self.user}:{self.password or ''}".encode()).decode()
        return {"Authorization": f"Basic {token}"}


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class TestImage:
    """One random layer of ``size`` bytes, a config and a schema-2 manifest."""

    layer: bytes
    config: bytes

    @classmethod
    def random(cls, size: int, label: str) -> TestImage:
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "config": {"Labels": {"bench": label}},
             "rootfs": {"type": "layers", "diff_ids": []}}, sort_keys=True
        ).encode()  # fmt: skip
        return cls(os.urandom(size), config)

    @property
    def manifest(self) -> bytes:
        def descriptor(media_type: str, blob: bytes) -> dict[str, object]:
            return {"mediaType": media_type, "size": len(blob), "digest": digest_of(blob)}

        body = {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": descriptor(CONFIG_V1, self.config),
            "layers": [descriptor(LAYER, self.layer)],
        }
        return json.dumps(body, sort_keys=True).encode()


class Client:
    """The registry API at ``address`` (host:port) over one reused connection."""

    def __init__(self, address: str, access: Access | None = None, timeout: float = TIMEOUT):
        self.address = address
        self.access = access or Access()
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            host, _, port = self.address.rpartition(":")
            if self.access.ca_file:
                context = ssl.create_default_context(cafile=self.access.ca_file)
                self._conn = http.client.HTTPSConnection(
                    host, int(port), timeout=self.timeout, context=context
                )
            else:
                self._conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict[str, str], int]:
        """(status, headers, bytes of body read); the body itself is discarded."""
        conn = self._connection()
        try:
            sent = {**self.access.headers(), **(headers or {})}
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            size = 0
            while chunk := response.read(CHUNK):
                size += len(chunk)
        except (OSError, http.client.HTTPException):
            self.close()  # a broken keep-alive connection is not reused
            raise
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, size

    def _expect(self, got: int, wanted: int, what: str) -> None:
        if got != wanted:
            raise RegistryError(f"{what} at {self.address}: HTTP {got}, expected {wanted}")

    def push_blob(self, repo: str, blob: bytes) -> None:
        status, headers, _ = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        self._expect(status, 202, "start upload")
        parts = urlsplit(headers.get("location", ""))
        query = f"{parts.query}&" if parts.query else ""
        path = f"{parts.path}?{query}digest={digest_of(blob)}"
        status, _, _ = self.request("PUT", path, blob, {"Content-Type": "application/octet-stream"})
        self._expect(status, 201, "finish upload")

    def push(self, repo: str, tag: str, image: TestImage) -> float:
        """Push ``image`` as repo:tag (layer, config, manifest); the seconds it took."""
        started = time.perf_counter()
        self.push_blob(repo, image.layer)
        self.push_blob(repo, image.config)
        status, _, _ = self.request(
            "PUT", f"/v2/{repo}/manifests/{tag}", image.manifest, {"Content-Type": MANIFEST_V2}
        )
        self._expect(status, 201, "put manifest")
        return time.perf_counter() - started

    def manifest(self, repo: str, tag: str) -> float:
        """GET the manifest; the seconds it took."""
        started = time.perf_counter()
        status, _, _ = self.request(
            "GET", f"/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_V2}
        )
        self._expect(status, 200, "get manifest")
        return time.perf_counter() - started

    def pull(self, repo: str, tag: str, image: TestImage) -> float:
        """GET the manifest and every blob of ``image`` (sizes checked); the seconds."""
        started = time.perf_counter()
        self.manifest(repo, tag)
        for blob in (image.config, image.layer):
            status, _, size = self.request("GET", f"/v2/{repo}/blobs/{digest_of(blob)}")
            self._expect(status, 200, "get blob")
            if size != len(blob):
                raise RegistryError(f"blob came back with {size} bytes, not {len(blob)}")
        return time.perf_counter() - started
