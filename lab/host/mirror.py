"""The lab's image mirror: Debian's ``docker-registry`` on the lab bridge's host address.

Every node's dockerd uses it as ``--registry-mirror``, so a plain ``docker pull
redis:7.2`` on a node is served from ``library/redis:7.2`` here. Its store lives in
the kit's cache dir (shared by every lab, kept by ``lab.destroy``); one process per lab.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from lab.errors import ProviderError
from lab.host.proc import read_pid, spawn, stop_pid, tool_path, wait_until
from lab.paths import cache_dir
from lab.spec import LabSpec

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, accept: str | None = None, timeout: float = 5) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with _NO_PROXY.open(request, timeout=timeout) as response:
        return response.read()


def mirror_path(reference: str) -> str:
    """Where an image lives in the mirror: Docker Hub official names go under library/."""
    name, _, tag = reference.rpartition(":")
    first = name.split("/")[0]
    if "." in first or ":" in first or first == "localhost":  # another registry's host
        name = name.split("/", 1)[1]
    elif "/" not in name:
        name = f"library/{name}"
    return f"{name}:{tag}"


class Mirror:
    """The lab's pull-through point: one docker-registry process per lab, one shared store."""

    def __init__(self, spec: LabSpec, run_dir: Path, log_dir: Path):
        self.address = spec.mirror
        self.run_dir = run_dir
        self.log = log_dir / "mirror.log"
        self.pidfile = run_dir / "mirror.pid"
        self.storage = cache_dir() / "mirror"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def ready(self) -> bool:
        try:
            http_get(f"{self.url}/v2/", timeout=1)
        except (urllib.error.URLError, OSError):
            return False
        return True

    def ensure_running(self) -> None:
        if self.ready():
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(parents=True, exist_ok=True)
        config = self.run_dir / "mirror.yml"
        config.write_text(self._config())
        pid = spawn([tool_path("docker-registry"), "serve", str(config)], self.log)
        self.pidfile.write_text(str(pid))
        if not wait_until(self.ready, 20, 0.1):
            raise ProviderError(f"the image mirror did not start on {self.address}, see {self.log}")

    def _config(self) -> str:
        config = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage)},
                "delete": {"enabled": True},
            },
            "http": {"addr": self.address},
        }
        return json.dumps(config, indent=2)  # JSON is YAML

    def stop(self) -> None:
        stop_pid(read_pid(self.pidfile, "docker-registry"), grace=10)
        self.pidfile.unlink(missing_ok=True)

    def manifest_digest(self, reference: str) -> str | None:
        """The digest a pull of ``reference`` through this mirror records, or None."""
        name, _, tag = mirror_path(reference).rpartition(":")
        request = urllib.request.Request(
            f"{self.url}/v2/{name}/manifests/{tag}",
            headers={"Accept": MANIFEST_TYPES},
            method="HEAD",
        )
        try:
            with _NO_PROXY.open(request, timeout=5) as response:
                return response.headers.get("Docker-Content-Digest")
        except (urllib.error.URLError, OSError):
            return None

    def labels(self, reference: str) -> dict[str, str] | None:
        """The labels of an image in the mirror, or None when it is not there."""
        name, _, tag = mirror_path(reference).rpartition(":")
        try:
            manifest = json.loads(
                http_get(f"{self.url}/v2/{name}/manifests/{tag}", accept=MANIFEST_TYPES)
            )
            digest = manifest["config"]["digest"]
            config = json.loads(http_get(f"{self.url}/v2/{name}/blobs/{digest}"))
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            return None
        return config.get("config", {}).get("Labels") or {}
