"""The MinIO stand-in (lab/standin/s3_standin.py) as real processes on 127.0.0.1.

One "serve" process and one "relay" in front of it are shared by the module; a
Debian docker-registry with the S3 driver pushes an image through the relay.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lab.standin import s3_standin

SCRIPT = Path(s3_standin.__file__)
ROOT_USER, ROOT_PASSWORD = "labadmin", "lab-secret-123"
REGISTRY_BINARY = "/usr/bin/docker-registry"


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1):
            return
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer within {seconds}s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes], seconds: float = 5) -> int:
    """SIGTERM by PID, SIGKILL if it lingers; returns the exit status."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def start(
    args: list[str], log: Path, env: dict[str, str], request: pytest.FixtureRequest
) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env)
    handle.close()
    request.addfinalizer(lambda: stop(proc))  # runs even when the test fails
    return proc


def standin_env(creds: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "STANDIN_"))}
    env.update(
        MINIO_ROOT_USER_FILE=str(creds / "user"),
        MINIO_ROOT_PASSWORD_FILE=str(creds / "password"),
        **extra,
    )
    return env


def s3_client(port: int, key: str = ROOT_USER, secret: str = ROOT_PASSWORD) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(
            signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}
        ),
    )


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A plain (anonymous) HTTP request; returns status, headers, body even on errors."""
    headers = {"Content-Type": "application/octet-stream", **(headers or {})}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def first_line_with(log: Path, text: str, seconds: float = 15) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if text in line:
                return line
        time.sleep(0.1)
    pytest.fail(f"no line with {text!r} in {log}:\n{log.read_text()}")


# --------------------------------------------------------------------------- fixtures


@dataclass
class Store:
    serve_port: int
    relay_port: int
    serve_proc: subprocess.Popen[bytes]
    serve_log: Path


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("secrets")
    (directory / "user").write_text(ROOT_USER + "\n")  # docker secrets often end in \n
    (directory / "password").write_text(ROOT_PASSWORD + "\n")
    return directory


@pytest.fixture(scope="module")
def store(
    creds: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Store:
    logs = tmp_path_factory.mktemp("logs")
    serve_port, relay_port = free_port(), free_port()
    env = standin_env(creds)
    serve_proc = start(
        [sys.executable, str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(serve_port)],
        logs / "serve.log",
        env,
        request,
    )
    relay_proc = start(
        [
            sys.executable,
            str(SCRIPT),
            "relay",
            "--host",
            "127.0.0.1",
            "--port",
            str(relay_port),
            "--upstream",
            f"127.0.0.1:{serve_port}",
        ],
        logs / "relay.log",
        env,
        request,
    )
    wait_for_http(
        f"http://127.0.0.1:{serve_port}/minio/health/live", serve_proc, logs / "serve.log"
    )
    wait_for_http(
        f"http://127.0.0.1:{relay_port}/minio/health/live", relay_proc, logs / "relay.log"
    )
    s3_client(serve_port).create_bucket(Bucket="docker")
    return Store(serve_port, relay_port, serve_proc, logs / "serve.log")


# --------------------------------------------------------------------------- serve


def test_root_credentials_put_get_delete(store: Store) -> None:
    s3 = s3_client(store.serve_port)
    s3.put_object(Bucket="docker", Key="dir/hello world.txt", Body=b"hello")
    assert s3.get_object(Bucket="docker", Key="dir/hello world.txt")["Body"].read() == b"hello"
    s3.delete_object(Bucket="docker", Key="dir/hello world.txt")
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket="docker", Key="dir/hello world.txt")
    assert missing.value.response["Error"]["Code"] in ("404", "NoSuchKey")


def test_wrong_access_key_is_rejected(store: Store) -> None:
    with pytest.raises(ClientError) as denied:
        s3_client(store.serve_port, key="intruder").list_objects_v2(Bucket="docker")
    assert denied.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_wrong_secret_is_rejected(store: Store) -> None:
    with pytest.raises(ClientError) as denied:
        s3_client(store.serve_port, secret="not-the-secret").put_object(
            Bucket="docker", Key="x", Body=b"x"
        )
    assert denied.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_presigned_url_works_and_is_checked(store: Store) -> None:
    s3 = s3_client(store.serve_port)
    s3.put_object(Bucket="docker", Key="presigned", Body=b"signed")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "docker", "Key": "presigned"})
    assert http("GET", url)[::2] == (200, b"signed")
    assert http("GET", url.replace("presigned?", "other?"))[0] == 403


def test_anonymous_access_follows_bucket_policy(store: Store) -> None:
    s3 = s3_client(store.serve_port)
    s3.create_bucket(Bucket="public")
    url = f"http://127.0.0.1:{store.serve_port}/public/anon.txt"
    status, _, body = http("PUT", url, b"anonymous")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    assert http("GET", f"http://127.0.0.1:{store.serve_port}/public")[0] == 403
    assert http("GET", f"http://127.0.0.1:{store.serve_port}/")[0] == 403

    s3.put_bucket_policy(
        Bucket="public",
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": ["*"]},
                        "Action": ["s3:GetObject", "s3:PutObject"],
                        "Resource": ["arn:aws:s3:::public/*"],
                    },
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:ListBucket",
                        "Resource": "arn:aws:s3:::public",
                    },
                ],
            }
        ),
    )
    assert http("PUT", url, b"anonymous")[0] == 200
    assert http("GET", url)[::2] == (200, b"anonymous")
    assert b"anon.txt" in http("GET", f"http://127.0.0.1:{store.serve_port}/public")[2]
    assert http("DELETE", url)[0] == 403  # s3:DeleteObject was not granted
    assert http("PUT", f"http://127.0.0.1:{store.serve_port}/docker/anon", b"x")[0] == 403


@pytest.mark.parametrize("path", ["live", "ready", "cluster", "cluster/read"])
def test_health_endpoints(store: Store, path: str) -> None:
    for port in (store.serve_port, store.relay_port):
        for method in ("GET", "HEAD"):
            assert http(method, f"http://127.0.0.1:{port}/minio/health/{path}")[0] == 200


def test_requests_are_logged(store: Store) -> None:
    http("GET", f"http://127.0.0.1:{store.serve_port}/minio/health/cluster")
    assert "role=serve" in first_line_with(store.serve_log, "role=")
    first_line_with(store.serve_log, "GET /minio/health/cluster 200")


# --------------------------------------------------------------------------- relay


def test_relay_reaches_the_same_store(store: Store) -> None:
    s3_client(store.relay_port).put_object(Bucket="docker", Key="via-relay", Body=b"relayed")
    body = s3_client(store.serve_port).get_object(Bucket="docker", Key="via-relay")["Body"]
    assert body.read() == b"relayed"
    with pytest.raises(ClientError) as denied:
        s3_client(store.relay_port, key="intruder").list_objects_v2(Bucket="docker")
    assert denied.value.response["Error"]["Code"] == "InvalidAccessKeyId"


def test_relay_closes_client_when_upstream_is_down(
    creds: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    port = free_port()
    proc = start(
        [
            sys.executable,
            str(SCRIPT),
            "relay",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--upstream",
            f"127.0.0.1:{free_port()}",
        ],
        tmp_path / "relay.log",
        standin_env(creds, STANDIN_UPSTREAM_WAIT="0.5"),
        request,
    )
    first_line_with(tmp_path / "relay.log", "role=relay")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"GET /minio/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(1024) == b""  # closed without an answer
    assert proc.poll() is None
    assert stop(proc) == 0  # SIGTERM -> exit 0


# --------------------------------------------------------------------------- auto, SIGTERM


@pytest.mark.parametrize("primary_is_me", [True, False])
def test_auto_picks_role_from_hostname(
    creds: Path, tmp_path: Path, request: pytest.FixtureRequest, primary_is_me: bool
) -> None:
    primary = socket.gethostname() if primary_is_me else "some-other-host"
    log = tmp_path / "auto.log"
    proc = start(
        [sys.executable, str(SCRIPT), "auto", "--host", "127.0.0.1", "--port", str(free_port())],
        log,
        standin_env(creds, STANDIN_PRIMARY=primary),
        request,
    )
    expected = "role=serve" if primary_is_me else "role=relay listening"
    first_line_with(log, expected)
    if not primary_is_me:
        assert "-> some-other-host:" in first_line_with(log, "role=relay")
    started = time.monotonic()
    assert stop(proc) == 0
    assert time.monotonic() - started < 3, "SIGTERM must stop the stand-in promptly"


# --------------------------------------------------------------------------- pure functions


def test_relative_secret_names_resolve_under_run_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "minio_user").write_text("alice\n")
    (tmp_path / "minio_password").write_text("wonderland\n")
    monkeypatch.setattr(s3_standin, "SECRETS_DIR", tmp_path)
    for name in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MINIO_ROOT_USER_FILE", "minio_user")
    monkeypatch.setenv("MINIO_ROOT_PASSWORD_FILE", "minio_password")
    assert s3_standin.load_root_credentials() == ("alice", "wonderland")


def test_policy_evaluation() -> None:
    allow_read = {
        "Effect": "Allow",
        "Principal": "*",
        "Action": "s3:Get*",
        "Resource": "arn:aws:s3:::docker/*",
    }
    deny_secret = {
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": "s3:*",
        "Resource": "arn:aws:s3:::docker/secret/*",
    }
    conditional = {**allow_read, "Action": "s3:PutObject", "Condition": {"IpAddress": {}}}
    policy = json.dumps({"Statement": [allow_read, deny_secret, conditional]})
    assert s3_standin.policy_allows(policy, "s3:GetObject", "arn:aws:s3:::docker/a")
    assert not s3_standin.policy_allows(policy, "s3:GetObject", "arn:aws:s3:::docker/secret/a")
    assert not s3_standin.policy_allows(policy, "s3:PutObject", "arn:aws:s3:::docker/a")
    assert not s3_standin.policy_allows(None, "s3:GetObject", "arn:aws:s3:::docker/a")
    assert s3_standin.anonymous_action("HEAD", "/docker/k", {}) == (
        "s3:GetObject",
        "arn:aws:s3:::docker/k",
    )
    assert s3_standin.anonymous_action("GET", "/docker", {"list-type": "2"}) == (
        "s3:ListBucket",
        "arn:aws:s3:::docker",
    )
    assert s3_standin.anonymous_action("PUT", "/docker", {"policy": ""}) is None


# --------------------------------------------------------------------------- docker registry


@pytest.fixture(scope="module")
def registry_port(
    store: Store, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> int:
    if not shutil.which(REGISTRY_BINARY):
        pytest.fail(f"{REGISTRY_BINARY} is missing: apt-get install docker-registry")
    work = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "info"},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "lab-http-secret"},
        "storage": {
            "s3": {
                "accesskey": ROOT_USER,
                "secretkey": ROOT_PASSWORD,
                "region": "us-east-1",
                "regionendpoint": f"http://127.0.0.1:{store.relay_port}",
                "bucket": "docker",
                "secure": False,
                "v4auth": True,
            },
            "redirect": {"disable": True},
        },
    }
    (work / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    # AWS_CA_BUNDLE makes the registry's S3 driver panic (LoadCustomCABundleError).
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    proc = start(
        [REGISTRY_BINARY, "serve", str(work / "config.yml")], work / "registry.log", env, request
    )
    wait_for_http(f"http://127.0.0.1:{port}/v2/", proc, work / "registry.log")
    return port


def push_blob(registry: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, body = http("POST", f"{registry}/v2/{repo}/blobs/uploads/", b"")
    assert status == 202, body
    location = headers["Location"]
    location = location if location.startswith("http") else registry + location
    separator = "&" if "?" in location else "?"
    status, _, body = http("PUT", f"{location}{separator}digest={digest}", data)
    assert status == 201, body
    return digest


def test_registry_pushes_an_image_through_the_relay(store: Store, registry_port: int) -> None:
    registry = f"http://127.0.0.1:{registry_port}"
    layer = b"not really a tarball, the registry does not look inside"
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    layer_digest = push_blob(registry, "lab/demo", layer)
    config_digest = push_blob(registry, "lab/demo", config)
    assert http("HEAD", f"{registry}/v2/lab/demo/blobs/{layer_digest}")[0] == 200

    media = "application/vnd.docker.distribution.manifest.v2+json"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": config_digest,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": layer_digest,
                }
            ],
        }
    ).encode()
    status, _, body = http(
        "PUT", f"{registry}/v2/lab/demo/manifests/v1", manifest, {"Content-Type": media}
    )
    assert status == 201, body
    status, _, body = http("GET", f"{registry}/v2/lab/demo/manifests/v1", None, {"Accept": media})
    assert status == 200 and body == manifest

    key = f"docker/registry/v2/blobs/sha256/{layer_digest[7:9]}/{layer_digest[7:]}/data"
    stored = s3_client(store.serve_port).get_object(Bucket="docker", Key=key)["Body"].read()
    assert stored == layer
