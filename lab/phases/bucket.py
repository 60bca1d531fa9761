"""Phase bucket: the registry's bucket, created through the S3 API."""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
import uuid

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from lab.phases.context import PhaseContext
from lab.plan import ABSENT, Check, Step, TraineeCommand, Upload
from lab.secrets import write_private

TITLE = "the registry's bucket"
TUTORIAL = "Installing Minio Object Store: log in to the UI, create the bucket docker, allow *"
# The trainee's S3 client: Debian's s3cmd, configured by the kit in the login user's
# home on the first node (the config holds the keys: 0600, never printed).
S3CFG = ".s3cfg"
S3CFG_LOCAL = "s3cfg"  # in build/<lab>/secrets/
EXPLAIN = """\
The registry stores images in one bucket (docker). The tutorial clicks it into
existence in MinIO's web UI and opens it to everyone; the kit creates it
through the S3 API and keeps it private by default: the registries sign their
requests with the lab's keys. `bucket.policy: public-readwrite` in lab.yaml
reproduces the tutorial's open bucket (with a warning)."""


def endpoint(ctx: PhaseContext) -> str:
    return ctx.spec.minio_endpoint(ctx.spec.nodes[0])


def s3_client(ctx: PhaseContext):  # noqa: ANN201 - boto3 clients are dynamically typed
    return boto3.client(
        "s3",
        endpoint_url=endpoint(ctx),
        aws_access_key_id=ctx.secrets.minio_access_key,
        aws_secret_access_key=ctx.secrets.minio_secret_key,
        region_name=ctx.spec.registry.region,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3},
            connect_timeout=5,
            read_timeout=20,
        ),
    )


def public_policy(bucket: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": ["*"]},
                    "Action": ["s3:GetBucketLocation", "s3:ListBucket"],
                    "Resource": [f"arn:aws:s3:::{bucket}"],
                },
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": ["*"]},
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    "Resource": [f"arn:aws:s3:::{bucket}/*"],
                },
            ],
        },
        sort_keys=True,
    )


def ensure_bucket(ctx: PhaseContext) -> str:
    s3 = s3_client(ctx)
    bucket = ctx.spec.bucket.name
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    made = "exists" if bucket in existing else "created"
    if bucket not in existing:
        s3.create_bucket(Bucket=bucket)
    if ctx.spec.bucket.policy == "public-readwrite":
        s3.put_bucket_policy(Bucket=bucket, Policy=public_policy(bucket))
        return (
            f"bucket {bucket} {made}; WARNING: anyone who reaches MinIO may read and write it "
            "(the tutorial's setting; keep it private outside a lab)"
        )
    with contextlib.suppress(ClientError):  # no policy to remove
        s3.delete_bucket_policy(Bucket=bucket)
    return f"bucket {bucket} {made}, private (the registries sign with the lab's keys)"


def probe_round_trip(ctx: PhaseContext) -> str:
    s3 = s3_client(ctx)
    key = f"ha-registry-lab-probe/{uuid.uuid4().hex}"
    body = b"probe"
    try:
        s3.put_object(Bucket=ctx.spec.bucket.name, Key=key, Body=body)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "NoSuchBucket":
            return f"{ABSENT} no bucket {ctx.spec.bucket.name}"  # nothing to wait for
        raise
    got = s3.get_object(Bucket=ctx.spec.bucket.name, Key=key)["Body"].read()
    s3.delete_object(Bucket=ctx.spec.bucket.name, Key=key)
    return "put, get, delete ok" if got == body else f"read back {got!r}"


def probe_anonymous_write(ctx: PhaseContext) -> str:
    url = f"{endpoint(ctx)}/{ctx.spec.bucket.name}/ha-registry-lab-anonymous-{uuid.uuid4().hex}"
    request = urllib.request.Request(url, data=b"anonymous", method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    if status in (200, 204):
        s3_client(ctx).delete_object(Bucket=ctx.spec.bucket.name, Key=url.rsplit("/", 1)[1])
        return "accepted"
    return "refused" if status in (401, 403) else f"HTTP {status}"


def s3cmd_config(ctx: PhaseContext) -> str:
    address = endpoint(ctx).removeprefix("http://")
    return (
        "[default]\n"
        f"access_key = {ctx.secrets.minio_access_key}\n"
        f"secret_key = {ctx.secrets.minio_secret_key}\n"
        f"host_base = {address}\n"
        f"host_bucket = {address}\n"
        f"bucket_location = {ctx.spec.registry.region}\n"
        "use_https = False\n"
        "signature_v2 = False\n"
    )


def write_s3cmd_config(ctx: PhaseContext) -> str:
    write_private(ctx.secrets.file(S3CFG_LOCAL), s3cmd_config(ctx).encode())
    return f"s3cmd config for {endpoint(ctx)} written (0600; the keys are not shown)"


def plan(ctx: PhaseContext) -> list[Step]:
    return [
        Step(
            "write an s3cmd config with the lab's keys",
            host_action=write_s3cmd_config,
            display=f"write secrets/{S3CFG_LOCAL} (s3cmd: {endpoint(ctx)}, the lab's keys)",
            prepares=True,
        ),
        Step(
            f"put it on {ctx.leader} as ~/{S3CFG} for trainees",
            (ctx.leader,),
            f"chmod 0600 {S3CFG}",
            uploads=(Upload(ctx.secrets.file(S3CFG_LOCAL), S3CFG, 0o600),),
            prepares=True,
        ),
        Step(
            f"create the bucket {ctx.spec.bucket.name} ({ctx.spec.bucket.policy})",
            host_action=ensure_bucket,
            retry_for=120,  # after a checkpoint the instances take a moment to come back
            display=f"S3 CreateBucket {ctx.spec.bucket.name} at {endpoint(ctx)} "
            f"(policy: {ctx.spec.bucket.policy})",
        ),
    ]


def checks(ctx: PhaseContext) -> list[Check]:
    public = ctx.spec.bucket.policy == "public-readwrite"
    return [
        Check(
            "put/get/delete a probe object with the lab's keys",
            "put, get, delete ok",
            probe=probe_round_trip,
            settle_for=20,
            hint=f"inv lab.ssh {ctx.leader} -- s3cmd ls s3://{ctx.spec.bucket.name}",
        ),
        Check(
            "an anonymous write is " + ("accepted (public bucket)" if public else "refused"),
            "accepted" if public else "refused",
            probe=probe_anonymous_write,
            hint=f"inv lab.ssh {ctx.leader} -- s3cmd info s3://{ctx.spec.bucket.name}",
        ),
    ]


def trainee(ctx: PhaseContext) -> list[TraineeCommand]:
    leader, bucket = ctx.leader, ctx.spec.bucket.name
    cmds = [
        TraineeCommand(
            f"s3cmd talks to MinIO at {endpoint(ctx)} with the lab's keys (the kit wrote "
            f"~/{S3CFG}; Debian package s3cmd)",
            "s3cmd ls",
            leader,
        ),
        TraineeCommand(f"create the bucket {bucket}", f"s3cmd mb s3://{bucket}", leader),
        TraineeCommand(
            "its policy: none, so only the lab's keys may read and write it",
            f"s3cmd info s3://{bucket}",
            leader,
        ),
    ]
    if ctx.spec.bucket.policy == "public-readwrite":
        cmds.append(
            TraineeCommand(
                "the tutorial's read/write for * (lab.yaml asks for it; keep buckets "
                "private outside a lab)",
                f"s3cmd setpolicy <policy.json> s3://{bucket}",
                leader,
            )
        )
    return cmds


def differences(ctx: PhaseContext) -> list[str]:
    return [
        "the bucket is made with a command (s3cmd mb) instead of the web UI's + button",
        "the bucket stays private by default (bucket.policy: private): the registries sign "
        "with the lab's keys, and a check shows that an anonymous write is refused; "
        "`bucket.policy: public-readwrite` gives the tutorial's read/write for *",
    ]
