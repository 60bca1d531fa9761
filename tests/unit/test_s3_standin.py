"""The MinIO stand-in (lab/standin/s3_standin.py) as real processes on 127.0.0.1.

Four instances started with MinIO's command line (``server --address 127.0.0.1:P
http://127.0.0.1:P1/DIR1 ... http://127.0.0.1:P4/DIR4``: one drive each) are shared
by the module's S3 tests and by Debian docker-registries pushing and pulling through
them. Each drill starts four of its own and kills (SIGKILL), freezes (SIGSTOP) and
restarts instances: MinIO's quorum for 4 drives is 2 for reads and 3 for writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from lab.standin import s3_standin

SCRIPT = Path(s3_standin.__file__)
ROOT_USER, ROOT_PASSWORD = "labadmin", "lab-secret-123"
REGISTRY_BINARY = "/usr/bin/docker-registry"
BUCKET = "docker"


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(
    url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 15, status: int = 200
) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()}")
        if http("GET", url, timeout=1)[0] == status:
            return
        time.sleep(0.1)
    pytest.fail(f"{url} did not answer {status} within {seconds}s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes], seconds: float = 5) -> int:
    """SIGCONT (it may be frozen), SIGTERM by PID, SIGKILL if it lingers; the exit status."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
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
    handle = log.open("ab")
    proc = subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, env=env)
    handle.close()
    request.addfinalizer(lambda: stop(proc))  # runs even when the test fails
    return proc


def standin_env(creds: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "STANDIN_"))}
    env.update(
        MINIO_ROOT_USER_FILE=str(creds / "user"),
        MINIO_ROOT_PASSWORD_FILE=str(creds / "password"),
        STANDIN_FSYNC="0",  # tmpfs-like speed for tests; restarts of processes keep data anyway
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
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=5,
            read_timeout=20,
        ),
    )


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:
    """A plain (anonymous) HTTP request; status, headers, body even on errors (0 if none)."""
    headers = {"Content-Type": "application/octet-stream", **(headers or {})}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
    except OSError:
        return 0, {}, b""


def first_line_with(log: Path, text: str, seconds: float = 15) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if text in line:
                return line
        time.sleep(0.1)
    pytest.fail(f"no line with {text!r} in {log}:\n{log.read_text()}")


def error_of(call: Any) -> tuple[int, str]:
    """(HTTP status, S3 error code) of a boto3 call that must fail."""
    with pytest.raises(ClientError) as failed:
        call()
    response = failed.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def timed(call: Any) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


# --------------------------------------------------------------------------- a cluster


@dataclass
class Cluster:
    """Four stand-in instances on loopback, each with its own drive directory."""

    root: Path
    env: dict[str, str]
    request: pytest.FixtureRequest
    ports: list[int] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes] | None] = field(default_factory=list)
    clients: dict[int, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ports = [free_port() for _ in range(4)]
        self.procs = [None] * 4

    def drive(self, i: int) -> Path:
        return self.root / f"drive{i + 1}"

    def log(self, i: int) -> Path:
        return self.root / f"minio{i + 1}.log"

    def command(self, i: int) -> list[str]:
        urls = [f"http://127.0.0.1:{p}{self.drive(n)}" for n, p in enumerate(self.ports)]
        address = f"127.0.0.1:{self.ports[i]}"
        return [sys.executable, str(SCRIPT), "server", "--address", address, *urls]

    def url(self, i: int, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[i]}{path}"

    def start(self, *which: int) -> None:
        for i in which or range(4):
            self.procs[i] = start(self.command(i), self.log(i), self.env, self.request)
        for i in which or range(4):
            proc = self.procs[i]
            assert proc is not None
            wait_for_http(self.url(i, "/minio/health/live"), proc, self.log(i))

    def wait_for_quorum(self, *which: int) -> None:
        """Every instance named sees write quorum (its peers' probes answered)."""
        for i in which or range(4):
            proc = self.procs[i]
            assert proc is not None
            wait_for_http(self.url(i, "/minio/health/cluster"), proc, self.log(i))

    def signal(self, i: int, sig: signal.Signals) -> None:
        proc = self.procs[i]
        assert proc is not None
        os.kill(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait(5)

    def s3(self, i: int) -> Any:
        if i not in self.clients:  # a boto3 client takes tens of milliseconds to make
            self.clients[i] = s3_client(self.ports[i])
        return self.clients[i]

    def record(self, i: int, key: str, bucket: str = BUCKET) -> dict[str, Any] | None:
        """What drive i itself holds for a key, asked through the peers' API."""
        peer = s3_standin.Peer("127.0.0.1", self.ports[i])
        auth = s3_standin.PeerAuth(ROOT_USER, ROOT_PASSWORD)
        drive = s3_standin.RemoteDrive(peer, str(self.drive(i)), auth)
        return drive.stat(bucket, key)["object"]

    def data_files(self, i: int, key: str, bucket: str = BUCKET) -> list[Path]:
        """The files of a key's current version on drive i (layout: see LocalDrive)."""
        stamp = self.record(i, key, bucket)["stamp"]  # type: ignore[index]
        digest = hashlib.sha256(key.encode()).hexdigest()
        folder = self.drive(i) / ".standin" / "objects" / bucket / digest[:2]
        return sorted(folder.glob(f"{digest}.{stamp}.*data"))

    def wait_for_record(self, i: int, key: str, stamp: str, seconds: float = 15) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if (self.record(i, key) or {}).get("stamp") == stamp:
                    return
            time.sleep(0.2)
        pytest.fail(
            f"drive {i + 1} did not heal {key} within {seconds}s:\n{self.log(i).read_text()}"
        )


@pytest.fixture(scope="module")
def creds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("secrets")
    (directory / "user").write_text(ROOT_USER + "\n")  # docker secrets often end in \n
    (directory / "password").write_text(ROOT_PASSWORD + "\n")
    return directory


def new_cluster(creds: Path, root: Path, request: pytest.FixtureRequest) -> Cluster:
    cluster = Cluster(root, standin_env(creds), request)
    cluster.start()
    cluster.wait_for_quorum()
    cluster.s3(0).create_bucket(Bucket=BUCKET)
    return cluster


@pytest.fixture(scope="module")
def store(
    creds: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Cluster:
    return new_cluster(creds, tmp_path_factory.mktemp("store"), request)


@pytest.fixture
def drill(creds: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Cluster:
    return new_cluster(creds, tmp_path, request)


# --------------------------------------------------------------------------- S3 and checks


def test_root_credentials_put_get_delete(store: Cluster) -> None:
    s3 = store.s3(0)
    s3.put_object(Bucket=BUCKET, Key="dir/hello world.txt", Body=b"hello")
    assert s3.get_object(Bucket=BUCKET, Key="dir/hello world.txt")["Body"].read() == b"hello"
    s3.delete_object(Bucket=BUCKET, Key="dir/hello world.txt")
    status, code = error_of(lambda: s3.head_object(Bucket=BUCKET, Key="dir/hello world.txt"))
    assert (status, code) == (404, "404")


def test_wrong_access_key_is_rejected(store: Cluster) -> None:
    s3 = s3_client(store.ports[1], key="intruder")
    assert error_of(lambda: s3.list_objects_v2(Bucket=BUCKET))[1] == "InvalidAccessKeyId"


def test_wrong_secret_is_rejected(store: Cluster) -> None:
    s3 = s3_client(store.ports[2], secret="not-the-secret")
    code = error_of(lambda: s3.put_object(Bucket=BUCKET, Key="x", Body=b"x"))[1]
    assert code == "SignatureDoesNotMatch"


def test_a_body_that_does_not_match_its_signed_hash_is_refused(store: Cluster) -> None:
    url = store.url(0, f"/{BUCKET}/tampered")
    declared = hashlib.sha256(b"what was signed").hexdigest()
    signed = AWSRequest(
        "PUT", url, data=b"what was signed", headers={"x-amz-content-sha256": declared}
    )
    SigV4Auth(Credentials(ROOT_USER, ROOT_PASSWORD), "s3", "us-east-1").add_auth(signed)
    status, _, body = http("PUT", url, b"what arrived", dict(signed.headers))
    assert status == 400 and b"<Code>XAmzContentSHA256Mismatch</Code>" in body
    assert error_of(lambda: store.s3(1).head_object(Bucket=BUCKET, Key="tampered"))[0] == 404


def test_presigned_url_works_and_is_checked(store: Cluster) -> None:
    s3 = store.s3(1)
    s3.put_object(Bucket=BUCKET, Key="presigned", Body=b"signed")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "presigned"})
    assert http("GET", url)[::2] == (200, b"signed")
    assert http("GET", url.replace("presigned?", "other?"))[0] == 403


def test_anonymous_access_follows_bucket_policy(store: Cluster) -> None:
    s3 = store.s3(0)
    s3.create_bucket(Bucket="public")
    url = store.url(2, "/public/anon.txt")  # the policy is set through another instance
    status, _, body = http("PUT", url, b"anonymous")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    assert http("GET", store.url(2, "/public"))[0] == 403
    assert http("GET", store.url(2, "/"))[0] == 403

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
    assert http("GET", store.url(3, "/public/anon.txt"))[::2] == (200, b"anonymous")
    assert b"anon.txt" in http("GET", store.url(1, "/public"))[2]
    assert http("DELETE", url)[0] == 403  # s3:DeleteObject was not granted
    assert http("PUT", store.url(2, f"/{BUCKET}/anon"), b"x")[0] == 403
    s3.delete_bucket_policy(Bucket="public")
    assert http("GET", store.url(3, "/public/anon.txt"))[0] == 403


def test_peer_api_requires_the_peer_key(store: Cluster) -> None:
    target = f"{s3_standin.INTERNAL_PREFIX}stat?drive={store.drive(0)}&bucket={BUCKET}"
    assert http("GET", store.url(0, target))[0] == 403  # anonymous
    forged = s3_standin.PeerAuth(ROOT_USER, "guessed").sign("GET", target)
    assert http("GET", store.url(0, target), headers={"X-Standin-Auth": forged})[0] == 403
    good = s3_standin.PeerAuth(ROOT_USER, ROOT_PASSWORD).sign("GET", target)
    status, _, body = http("GET", store.url(0, target), headers={"X-Standin-Auth": good})
    assert status == 200 and json.loads(body)["bucket"]["name"] == BUCKET


@pytest.mark.parametrize("path", ["live", "ready", "cluster", "cluster/read"])
def test_health_endpoints(store: Cluster, path: str) -> None:
    for i in range(4):
        for method in ("GET", "HEAD"):
            assert http(method, store.url(i, f"/minio/health/{path}"))[0] == 200


def test_requests_are_logged(store: Cluster) -> None:
    http("GET", store.url(0, "/minio/health/cluster"))
    line = first_line_with(store.log(0), "role=server")
    assert "4 drives (EC:2; read quorum 2, write quorum 3)" in line
    first_line_with(store.log(0), "GET /minio/health/cluster 200")


def test_put_through_one_instance_get_through_another(store: Cluster) -> None:
    store.s3(0).put_object(Bucket=BUCKET, Key="across", Body=b"written via minio1")
    body = store.s3(2).get_object(Bucket=BUCKET, Key="across")["Body"].read()
    assert body == b"written via minio1"
    stamp = store.record(0, "across")["stamp"]  # type: ignore[index]
    for i in range(4):  # acknowledged at 3 of 4; the 4th copy follows at once
        store.wait_for_record(i, "across", stamp, seconds=5)


def test_multipart_upload_spread_over_instances(store: Cluster) -> None:
    # The registries behind the load balancer resume an upload through other instances.
    big, tail = os.urandom(5 * 1024 * 1024), b"tail"
    upload = store.s3(0).create_multipart_upload(Bucket=BUCKET, Key="mp")["UploadId"]
    etag1 = store.s3(1).upload_part(
        Bucket=BUCKET, Key="mp", UploadId=upload, PartNumber=1, Body=big
    )["ETag"]
    etag2 = store.s3(2).upload_part(
        Bucket=BUCKET, Key="mp", UploadId=upload, PartNumber=2, Body=tail
    )["ETag"]
    uploads = store.s3(3).list_multipart_uploads(Bucket=BUCKET, Prefix="mp")["Uploads"]
    assert [u["UploadId"] for u in uploads] == [upload]
    parts = store.s3(3).list_parts(Bucket=BUCKET, Key="mp", UploadId=upload)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(big)), (2, len(tail))]
    too_small = {"Parts": [{"PartNumber": 2, "ETag": etag2}, {"PartNumber": 1, "ETag": etag1}]}
    assert (
        error_of(
            lambda: store.s3(3).complete_multipart_upload(
                Bucket=BUCKET, Key="mp", UploadId=upload, MultipartUpload=too_small
            )
        )[1]
        == "InvalidPartOrder"
    )
    done = store.s3(3).complete_multipart_upload(
        Bucket=BUCKET,
        Key="mp",
        UploadId=upload,
        MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": etag1}, {"PartNumber": 2, "ETag": etag2}]
        },
    )
    assert done["ETag"].endswith('-2"')
    assert store.s3(0).get_object(Bucket=BUCKET, Key="mp")["Body"].read() == big + tail
    got = store.s3(1).get_object(Bucket=BUCKET, Key="mp", Range=f"bytes={len(big) - 2}-")
    assert got["Body"].read() == big[-2:] + tail  # a range across the two parts
    # Each drive keeps the parts as the object's files (hard links: no copy), as MinIO does.
    assert [f.name.split(".")[2] for f in store.data_files(2, "mp")] == ["p00001", "p00002"]
    assert "Uploads" not in store.s3(1).list_multipart_uploads(Bucket=BUCKET, Prefix="mp")


def test_listing_copy_range_and_batch_delete(store: Cluster) -> None:
    s3 = store.s3(1)
    for key in ("tree/a/1", "tree/a/2", "tree/b+c d", "tree/z"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    listed = store.s3(2).list_objects_v2(Bucket=BUCKET, Prefix="tree/", Delimiter="/")
    assert [p["Prefix"] for p in listed["CommonPrefixes"]] == ["tree/a/"]
    assert [o["Key"] for o in listed["Contents"]] == ["tree/b+c d", "tree/z"]
    paged = (
        store.s3(3)
        .get_paginator("list_objects")
        .paginate(Bucket=BUCKET, Prefix="tree/", PaginationConfig={"PageSize": 1})
    )
    assert [o["Key"] for page in paged for o in page.get("Contents", [])] == [
        "tree/a/1",
        "tree/a/2",
        "tree/b+c d",
        "tree/z",
    ]
    store.s3(0).copy_object(Bucket=BUCKET, Key="tree/copy", CopySource=f"{BUCKET}/tree/z")
    for i in range(4):  # a copy is a hard link on every drive (the registry moves each blob)
        (copy,), (original,) = store.data_files(i, "tree/copy"), store.data_files(i, "tree/z")
        assert copy.stat().st_ino == original.stat().st_ino
    ranged = store.s3(3).get_object(Bucket=BUCKET, Key="tree/copy", Range="bytes=1-3")
    assert ranged["Body"].read() == b"ree" and ranged["ContentRange"] == "bytes 1-3/6"
    store.s3(2).delete_objects(
        Bucket=BUCKET,
        Delete={"Objects": [{"Key": k} for k in ("tree/a/1", "tree/a/2", "tree/copy")]},
    )
    remaining = store.s3(0).list_objects_v2(Bucket=BUCKET, Prefix="tree/")["Contents"]
    assert [o["Key"] for o in remaining] == ["tree/b+c d", "tree/z"]


def test_listing_pages_through_drives_and_delete_markers(store: Cluster) -> None:
    keys = [f"many/{n:03d}" for n in range(130)]
    for key in keys:
        store.s3(n := int(key[-3:]) % 4).put_object(Bucket=BUCKET, Key=key, Body=b"x")
        if n == 1:  # every fourth one deleted again: markers among the records
            store.s3(2).delete_object(Bucket=BUCKET, Key=key)
    pages = (
        store.s3(3)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=BUCKET, Prefix="many/", PaginationConfig={"PageSize": 7})
    )
    listed = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert listed == [k for k in keys if int(k[-3:]) % 4 != 1]


def test_delete_markers_and_finished_uploads_every_drive_holds_are_dropped(
    creds: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cluster = Cluster(
        tmp_path,
        standin_env(creds, STANDIN_HEAL_INTERVAL="0.5", STANDIN_TOMBSTONE_TTL="0"),
        request,
    )
    cluster.start()
    cluster.wait_for_quorum()
    cluster.s3(0).create_bucket(Bucket=BUCKET)
    cluster.s3(1).put_object(Bucket=BUCKET, Key="gone", Body=b"soon gone")
    cluster.s3(2).delete_object(Bucket=BUCKET, Key="gone")
    upload = cluster.s3(0).create_multipart_upload(Bucket=BUCKET, Key="up")["UploadId"]
    cluster.s3(1).abort_multipart_upload(Bucket=BUCKET, Key="up", UploadId=upload)
    uploads = [cluster.drive(i) / ".standin" / "uploads" / BUCKET / upload for i in range(4)]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
        any(cluster.record(i, "gone") for i in range(4)) or any(u.exists() for u in uploads)
    ):
        time.sleep(0.2)
    assert not any(cluster.record(i, "gone") for i in range(4))
    assert not any(u.exists() for u in uploads)
    assert error_of(lambda: cluster.s3(3).get_object(Bucket=BUCKET, Key="gone"))[0] == 404


# --------------------------------------------------------------------------- drills


def test_drill_one_instance_killed_then_back_healed(drill: Cluster) -> None:
    drill.s3(0).put_object(Bucket=BUCKET, Key="before", Body=b"before")
    drill.signal(3, signal.SIGKILL)
    drill.s3(0).put_object(Bucket=BUCKET, Key="during", Body=b"while minio4 was dead")
    drill.s3(1).delete_object(Bucket=BUCKET, Key="before")
    assert drill.s3(2).get_object(Bucket=BUCKET, Key="during")["Body"].read().startswith(b"while")
    assert error_of(lambda: drill.s3(2).get_object(Bucket=BUCKET, Key="before"))[0] == 404
    assert http("GET", drill.url(0, "/minio/health/cluster"))[0] == 200  # 3 of 4: quorum

    drill.start(3)
    body = drill.s3(3).get_object(Bucket=BUCKET, Key="during")["Body"].read()
    assert body == b"while minio4 was dead"
    assert error_of(lambda: drill.s3(3).head_object(Bucket=BUCKET, Key="before"))[0] == 404
    stamp = drill.record(0, "during")["stamp"]  # type: ignore[index]
    drill.wait_for_record(3, "during", stamp)  # its drive heals (at start-up)
    drill.wait_for_record(3, "before", drill.record(0, "before")["stamp"])  # type: ignore[index]
    assert drill.record(3, "before")["deleted"]  # type: ignore[index]


def test_drill_one_instance_frozen_costs_little(
    drill: Cluster, record_property: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    drill.s3(1).put_object(Bucket=BUCKET, Key="old", Body=b"old")
    drill.signal(2, signal.SIGSTOP)  # accepts connections, answers nothing
    body, first_get = timed(lambda: drill.s3(0).get_object(Bucket=BUCKET, Key="old")["Body"].read())
    assert body == b"old"
    _, first_put = timed(lambda: drill.s3(1).put_object(Bucket=BUCKET, Key="new", Body=b"new"))
    put_at = time.monotonic()
    for i in (0, 3):  # the probes notice: the frozen peer is skipped from now on
        first_line_with(drill.log(i), f"peer 127.0.0.1:{drill.ports[2]} offline", seconds=10)
    _, later_get = timed(lambda: drill.s3(3).get_object(Bucket=BUCKET, Key="new")["Body"].read())
    _, later_put = timed(lambda: drill.s3(0).put_object(Bucket=BUCKET, Key="newer", Body=b"x"))
    assert http("GET", drill.url(0, "/minio/health/cluster"))[0] == 200
    timings = {
        "first_get": first_get,
        "first_put": first_put,
        "later_get": later_get,
        "later_put": later_put,
    }
    record_property("frozen_peer_seconds", timings)
    with capsys.disabled():
        print("\nfrozen peer:", {k: round(v, 3) for k, v in timings.items()})
    assert first_get < 3 and first_put < 3, timings
    assert later_get < 1 and later_put < 1, timings

    time.sleep(max(0.0, s3_standin.STALE_WRITE + 0.5 - (time.monotonic() - put_at)))
    drill.signal(2, signal.SIGCONT)  # its buffered calls are stale now: refused
    assert drill.record(2, "new") is None  # its drive missed the write...
    assert drill.s3(2).get_object(Bucket=BUCKET, Key="new")["Body"].read() == b"new"  # ...yet
    drill.wait_for_record(2, "new", drill.record(0, "new")["stamp"])  # type: ignore[index]


def test_drill_two_down_reads_go_on_writes_stop(drill: Cluster) -> None:
    drill.s3(0).put_object(Bucket=BUCKET, Key="kept", Body=b"kept")
    drill.signal(2, signal.SIGKILL)
    drill.signal(3, signal.SIGKILL)
    status, code = error_of(lambda: drill.s3(0).put_object(Bucket=BUCKET, Key="no", Body=b"no"))
    assert (status, code) == (503, "SlowDownWrite")
    (status, code), seconds = timed(
        lambda: error_of(lambda: drill.s3(1).delete_object(Bucket=BUCKET, Key="kept"))
    )
    assert (status, code) == (503, "SlowDownWrite") and seconds < 3
    assert drill.s3(1).get_object(Bucket=BUCKET, Key="kept")["Body"].read() == b"kept"
    assert [o["Key"] for o in drill.s3(0).list_objects_v2(Bucket=BUCKET)["Contents"]] == ["kept"]
    assert http("GET", drill.url(0, "/minio/health/cluster"))[0] == 503
    assert http("GET", drill.url(0, "/minio/health/cluster/read"))[0] == 200


def test_drill_three_down_reads_stop_and_come_back(drill: Cluster) -> None:
    drill.s3(0).put_object(Bucket=BUCKET, Key="kept", Body=b"kept")
    for i in (1, 2, 3):
        drill.signal(i, signal.SIGKILL)
    status, code = error_of(lambda: drill.s3(0).get_object(Bucket=BUCKET, Key="kept"))
    assert (status, code) == (503, "SlowDownRead")
    assert http("GET", drill.url(0, "/minio/health/cluster/read"))[0] == 503
    assert http("GET", drill.url(0, "/minio/health/live"))[0] == 200
    drill.start(1, 2, 3)
    drill.wait_for_quorum()
    for i in range(4):
        assert drill.s3(i).get_object(Bucket=BUCKET, Key="kept")["Body"].read() == b"kept"


def test_drill_every_instance_restarted_keeps_every_object(drill: Cluster) -> None:
    payload = os.urandom(6 * 1024 * 1024)
    drill.s3(0).upload_fileobj(
        io.BytesIO(payload),
        BUCKET,
        "large",
        Config=TransferConfig(multipart_threshold=5 * 1024 * 1024),
    )
    drill.s3(1).put_object(Bucket=BUCKET, Key="small", Body=b"small")
    for i in range(4):
        drill.signal(i, signal.SIGKILL)  # a crash: acknowledged means on the drives
    drill.start()
    drill.wait_for_quorum()
    assert drill.s3(3).get_object(Bucket=BUCKET, Key="large")["Body"].read() == payload
    for i in range(4):
        assert stop(drill.procs[i]) == 0  # type: ignore[arg-type]  # SIGTERM: exit 0
    drill.start()
    drill.wait_for_quorum()
    assert drill.s3(2).get_object(Bucket=BUCKET, Key="small")["Body"].read() == b"small"
    assert [b["Name"] for b in drill.s3(1).list_buckets()["Buckets"]] == [BUCKET]


# --------------------------------------------------------------------------- legacy roles


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


@pytest.mark.parametrize("mode", ["serve", "relay", "volumes"])
def test_auto_picks_its_role(
    creds: Path, tmp_path: Path, request: pytest.FixtureRequest, mode: str
) -> None:
    port = free_port()
    extra = {"STANDIN_PRIMARY": socket.gethostname() if mode == "serve" else "some-other-host"}
    if mode == "serve":
        extra["STANDIN_DRIVE"] = str(tmp_path / "drive")
    if mode == "volumes":
        extra["STANDIN_VOLUMES"] = f"http://127.0.0.1:{port}{tmp_path}/d{{1...2}}"
    log = tmp_path / "auto.log"
    proc = start(
        [sys.executable, str(SCRIPT), "auto", "--host", "127.0.0.1", "--port", str(port)],
        log,
        standin_env(creds, **extra),
        request,
    )
    expected = {
        "serve": "role=serve",
        "relay": "role=relay listening",
        "volumes": "role=server listening",
    }[mode]
    line = first_line_with(log, expected)
    if mode == "relay":
        assert "-> some-other-host:" in line
    if mode == "volumes":
        assert "2 drives (EC:1; read quorum 1, write quorum 2)" in line
    started = time.monotonic()
    assert stop(proc) == 0
    assert time.monotonic() - started < 3, "SIGTERM must stop the stand-in promptly"


# --------------------------------------------------------------------------- pure functions


def test_quorum_model_is_minio_s() -> None:
    four = s3_standin.Quorum.for_drives(4)
    assert (four.parity, four.read, four.write) == (2, 2, 3)
    assert four.can_read(2) and not four.can_read(1)
    assert four.can_write(3) and not four.can_write(2)
    assert s3_standin.Quorum.for_drives(1).write == 1
    assert (
        s3_standin.Quorum.for_drives(8, parity=3).read,
        s3_standin.Quorum.for_drives(8).write,
    ) == (5, 5)
    for drives in range(1, 17):
        for parity in range(drives // 2 + 1):
            q = s3_standin.Quorum.for_drives(drives, parity)
            assert q.read + q.write > drives  # every read quorum meets every write quorum
            assert 2 * q.write > drives  # two writes cannot both win on disjoint drives
            assert q.read <= q.write <= drives
    with pytest.raises(ValueError):
        s3_standin.Quorum.for_drives(4, parity=3)


class FakeDrive:
    """A drive for fan_out: answers after ``delay`` seconds, or fails."""

    local = False

    def __init__(self, name: str, delay: float = 0.0, fails: bool = False, up: bool = True):
        self.name, self.delay, self.fails, self.up = name, delay, fails, up

    def available(self) -> bool:
        return self.up

    def work(self) -> str:
        time.sleep(self.delay)
        if self.fails:
            raise s3_standin.DriveOffline(self.name)
        return self.name


def test_fan_out_waits_for_quorum_not_for_a_silent_drive() -> None:
    done = threading.Event()
    drives = [FakeDrive("a"), FakeDrive("b"), FakeDrive("c"), FakeDrive("frozen", delay=1.5)]
    answers, seconds = timed(
        lambda: s3_standin.fan_out(drives, FakeDrive.work, 3, grace=0.2, on_done=done.set)
    )
    assert seconds < 1 and [a.ok for a in answers] == [True, True, True, False]
    assert not done.is_set() and done.wait(5)  # on_done once the silent one ended too

    out_of_reach = [FakeDrive("a"), FakeDrive("b", fails=True), FakeDrive("c", up=False)]
    out_of_reach.append(FakeDrive("slow", delay=1.5))
    answers, seconds = timed(lambda: s3_standin.fan_out(out_of_reach, FakeDrive.work, 3))
    assert seconds < 1 and sum(a.ok for a in answers) == 1  # 3 can no longer be reached


def test_minio_command_line_is_understood() -> None:
    expand = s3_standin.expand_ellipses
    assert expand("http://minio{1...4}/export") == [f"http://minio{n}/export" for n in range(1, 5)]
    assert expand("/data{01...03}") == ["/data01", "/data02", "/data03"]
    assert expand("http://h{a...b}/d{1...2}") == [
        "http://ha/d1",
        "http://ha/d2",
        "http://hb/d1",
        "http://hb/d2",
    ]
    endpoints = s3_standin.parse_endpoints(["http://minio{1...4}/export"], 9000)
    assert [(e.host, e.port, e.path) for e in endpoints][1] == ("minio2", 9000, "/export")
    mine = [s3_standin.is_local(e, "", 9000, "minio3") for e in endpoints]
    assert mine == [False, False, True, False]
    local = s3_standin.Endpoint("127.0.0.1", 9001, "/d1")
    assert s3_standin.is_local(local, "127.0.0.1", 9001, "box")
    assert not s3_standin.is_local(local, "127.0.0.1", 9002, "box")
    assert s3_standin.parse_address(":9000") == ("", 9000)
    with pytest.raises(ValueError):
        s3_standin.parse_endpoints(["/a", "http://h/b"], 9000)
    with pytest.raises(ValueError):
        s3_standin.parse_endpoints(["http://h/d", "http://h/d"], 9000)


def test_listing_pages_like_s3() -> None:
    records = [{"key": k} for k in ("a/1", "a/2", "b", "c/1", "d")]
    page = s3_standin.paginate(records, "", "/", "", 2)
    assert ([r["key"] for r in page[0]], page[1], page[2], page[3]) == (["b"], ["a/"], True, "b")
    page = s3_standin.paginate(records, "", "/", "b", 2)
    assert ([r["key"] for r in page[0]], page[1], page[2]) == (["d"], ["c/"], False)
    assert s3_standin.parse_range("bytes=2-", 10) == (2, 8)
    assert s3_standin.parse_range("bytes=-3", 10) == (7, 3)
    assert s3_standin.parse_range("bytes=0-99", 10) == (0, 10)
    with pytest.raises(s3_standin.S3Error):
        s3_standin.parse_range("bytes=10-", 10)


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


def start_registry(
    store: Cluster, instance: int, tmp_path_factory: pytest.TempPathFactory, request: Any
) -> str:
    if not shutil.which(REGISTRY_BINARY):
        pytest.fail(f"{REGISTRY_BINARY} is missing: apt-get install docker-registry")
    work = tmp_path_factory.mktemp(f"registry{instance}")
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
                "regionendpoint": store.url(instance),
                "bucket": BUCKET,
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
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def registries(
    store: Cluster, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> tuple[str, str]:
    """Two registries, like two nodes': one on minio2, one on minio3."""
    return (
        start_registry(store, 1, tmp_path_factory, request),
        start_registry(store, 2, tmp_path_factory, request),
    )


def push_blob(registry: str, repo: str, data: bytes, chunk: int | None = None) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, body = http("POST", f"{registry}/v2/{repo}/blobs/uploads/", b"")
    assert status == 202, body
    location = headers["Location"]
    if chunk:  # PATCH in pieces, as docker push does for large layers
        for offset in range(0, len(data), chunk):
            location = location if location.startswith("http") else registry + location
            piece = data[offset : offset + chunk]
            status, headers, body = http("PATCH", location, piece)
            assert status == 202, body
            location = headers["Location"]
        data = b""
    location = location if location.startswith("http") else registry + location
    separator = "&" if "?" in location else "?"
    status, _, body = http("PUT", f"{location}{separator}digest={digest}", data, timeout=60)
    assert status == 201, body
    return digest


def test_registry_pushes_through_one_instance_and_pulls_through_another(
    store: Cluster, registries: tuple[str, str]
) -> None:
    push, pull = registries
    layer = os.urandom(12 * 1024 * 1024)  # more than one 10 MB chunk: a real multipart upload
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    layer_digest = push_blob(push, "lab/demo", layer, chunk=4 * 1024 * 1024)
    config_digest = push_blob(push, "lab/demo", config)
    assert http("HEAD", f"{push}/v2/lab/demo/blobs/{layer_digest}")[0] == 200

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
        "PUT", f"{push}/v2/lab/demo/manifests/v1", manifest, {"Content-Type": media}
    )
    assert status == 201, body
    status, _, body = http("GET", f"{pull}/v2/lab/demo/manifests/v1", None, {"Accept": media})
    assert status == 200 and body == manifest
    status, _, body = http("GET", f"{pull}/v2/lab/demo/blobs/{layer_digest}", timeout=60)
    assert status == 200 and body == layer

    key = f"docker/registry/v2/blobs/sha256/{layer_digest[7:9]}/{layer_digest[7:]}/data"
    assert store.s3(3).get_object(Bucket=BUCKET, Key=key)["Body"].read() == layer
    stamp = store.record(0, key)["stamp"]  # type: ignore[index]
    for i in range(4):
        store.wait_for_record(i, key, stamp, seconds=5)
    assert len(store.data_files(1, key)) == 2  # 10 MB + 2 MB: the registry's multipart upload
