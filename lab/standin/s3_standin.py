#!/usr/bin/env python3
"""MinIO stand-in for the local and libvirt providers: an S3 server that fails like MinIO.

MinIO binaries cannot be had on the local provider's hosts, so each of the services
minio1..minio4 runs this one file instead. Started with MinIO's own command line,

    s3_standin.py server [--address [HOST]:PORT] http://minio{1...4}/export

every instance serves S3 and keeps one "drive" (the endpoint whose host is this
instance's hostname, or a local address with this instance's port). The drives form
one erasure set as in MinIO, but each drive holds a full copy instead of a shard.
It is an S3 server of its own (standard library only); moto is no longer used.

The model (docs/s3-standin.md says more):

* Quorum is MinIO's for one set of N drives with its default parity P (EC:2 for 4
  drives; ``MINIO_STORAGE_CLASS_STANDARD=EC:n`` overrides it): reads need N-P drives,
  writes N-P, plus one when N-P equals P. With 4 drives: reads 2, writes 3.
* Every change (object, delete marker, bucket, policy, multipart upload and part)
  is a record stamped with a version (nanosecond clock + random suffix). The
  instance that takes a request sends it to every drive at once and answers once
  write quorum stored it; else 503 ``SlowDownWrite``, and the drives that stored it
  take it back (as MinIO undoes a rename that missed quorum). It refuses at once
  when fewer drives than write quorum are believed up. A read asks every drive and
  answers with the newest record among at least read quorum (else 503
  ``SlowDownRead``). Any read quorum meets any write quorum, so an acknowledged
  write is never read as missing or older.
* A drive is a directory: ``.standin/`` holds records as JSON and data as files,
  written to a temporary file, fsynced and renamed (``STANDIN_FSYNC=0`` skips the
  fsyncs). Bodies stream to disk; only the index of records is kept in memory. A
  completed multipart upload keeps its parts as the object's files and a copy is a
  hard link (no data is copied on a drive, as MinIO keeps an object's parts).
* A drive that missed writes heals: a read that sees an older copy repairs it, and
  each instance copies what its own drives lack from the others at start-up, when a
  peer comes back, when it notices it stood still (frozen), and every minute
  (``STANDIN_HEAL_INTERVAL``). Delete markers and finished uploads that every drive
  holds are dropped after ten minutes (``STANDIN_TOMBSTONE_TTL``).
* Peers are called with short timeouts (connect 1.5 s, 3 s for each send or read,
  30 s for the answer to a call that stored data; ``STANDIN_TIMEOUT_SCALE``
  stretches them), and answers are not awaited more than 0.3 s after quorum. A peer
  that failed is skipped until its probe (every second) answers again, so a frozen
  peer costs a request at most that 0.3 s. A write call that reaches a peer more
  than 2.5 s late (it was frozen) is refused: its caller may have given up on it.

Usage (stdlib only; it must not import the ``lab`` package):

    s3_standin.py server [--address [HOST]:PORT] DRIVE-OR-URL...   (MinIO's command line)
    s3_standin.py auto  --port 9000 [--host 0.0.0.0]    (what the image runs today)
    s3_standin.py serve --port 9000 [--host 0.0.0.0]    (one instance, one drive)
    s3_standin.py relay --port 9000 --upstream minio1:9000 [--host 0.0.0.0]

``{1...4}`` expands as in MinIO (``{01...16}`` zero-pads, ``{a...d}`` too). A URL
without a port has the port of ``--address`` (default ``:9000``). ``auto`` runs
``server`` with the arguments in ``$STANDIN_VOLUMES`` when set; otherwise it keeps
the older layout: it serves one drive (``/export``, or ``$STANDIN_DRIVE``) when the
hostname equals ``$STANDIN_PRIMARY`` (default ``minio1``) or ``$STANDIN_ROLE`` is
``serve``, and relays TCP to ``$STANDIN_PRIMARY:<port>`` elsewhere (``$STANDIN_ROLE``
``relay``). That layout has a single point of failure; it is there until the image
passes the stack's command line to ``server``.

What the S3 side enforces, and what it does not:

* ``GET``/``HEAD`` on ``/minio/health/live`` and ``/ready`` answer 200 while the
  process lives; ``/minio/health/cluster`` 200 only while write quorum's drives are
  reachable (503 otherwise), ``/minio/health/cluster/read`` likewise for read quorum.
  No credentials needed (as MinIO).
* Root credentials come from ``MINIO_ROOT_USER_FILE``/``MINIO_ROOT_PASSWORD_FILE``
  (a relative name resolves under /run/secrets/), else ``MINIO_ROOT_USER``/
  ``MINIO_ROOT_PASSWORD``, else MinIO's default ``minioadmin``/``minioadmin``.
  They are the only accepted keys; there are no other users.
* A signed request (``Authorization`` header, or presigned ``X-Amz-Credential``
  / ``AWSAccessKeyId`` query) with another access key -> 403 InvalidAccessKeyId.
* SigV4 signatures (header and presigned) are verified against the root secret
  -> 403 SignatureDoesNotMatch; presigned URLs past ``X-Amz-Expires`` -> 403.
  A body is checked against a hex ``x-amz-content-sha256`` and ``Content-MD5``.
  Not verified: SigV2 signatures (access key only), per-chunk signatures of
  aws-chunked uploads, and clock skew of ``X-Amz-Date``.
  ``STANDIN_VERIFY_SIGNATURES=0`` turns the signature check off (keys are still checked).
* An anonymous request -> 403 AccessDenied unless the bucket's policy
  (PutBucketPolicy) has an ``Allow`` statement for ``Principal: "*"`` whose
  Action and Resource (``*``/``?`` wildcards) match the request; a matching
  ``Deny`` wins. Mapped actions: s3:GetObject (GET/HEAD object), s3:PutObject
  (PUT object, multipart), s3:DeleteObject, s3:ListBucket (GET/HEAD bucket),
  s3:ListBucketMultipartUploads, s3:ListMultipartUploadParts,
  s3:AbortMultipartUpload, s3:GetBucketLocation. Allow statements with
  ``Condition``, ``NotAction``, ``NotResource`` or ``NotPrincipal`` never grant
  access; a Deny statement applies when its Action and Resource match, as if its
  Condition held (NotAction/NotResource Denies are ignored). Anything else
  anonymous (list buckets, create bucket, bucket sub-resources) is denied.
* Buckets are path-style only (as MinIO without MINIO_DOMAIN). The S3 subset:
  buckets (create, head, delete, list, location, policy), objects (put, get with
  one range, head, delete, copy, batch delete, list v1 and v2), multipart uploads
  (create, upload part, upload part copy, list parts, list uploads, complete,
  abort). No versioning, tagging, ACLs beyond a canned read, or object lock.
* Peers talk under ``/minio/standin/v1/`` with an HMAC of the request line and a
  timestamp, keyed by the root credentials; nothing there answers without it.

Logs: a start-up line naming the role and quorum, one line per S3 request (method,
path, status), one per peer state change and per heal. SIGTERM exits 0.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import email.utils
import fnmatch
import hashlib
import heapq
import hmac
import http.client
import http.server
import io
import json
import os
import re
import selectors
import shutil
import signal
import socket
import socketserver
import sys
import tempfile
import threading
import time
import traceback
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Record = dict[str, Any]

HEALTH_PATHS = frozenset(
    {
        "/minio/health/live",
        "/minio/health/ready",
        "/minio/health/cluster",
        "/minio/health/cluster/read",
    }
)
INTERNAL_PREFIX = "/minio/standin/v1/"
AUTH_HEADER = "X-Standin-Auth"
PROBE_HEADERS = {"X-Standin-Probe": "1"}  # peers' health probes: not logged
RECORD_HEADER = "X-Standin-Record"
SECRETS_DIR = Path("/run/secrets")
DEFAULT_ROOT = ("minioadmin", "minioadmin")
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
OWNER_ID = "02d6176db174dc93cb1b899f7c6078f08654445fe8cf1b6ce98d8855f66bdbf4"
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_NUMBER = 10000
COPY_BLOCK = 1024 * 1024


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# Peer calls: a frozen peer accepts connections (its kernel still runs) and then says
# nothing, so every call has a bound on connect and on each read. STANDIN_TIMEOUT_SCALE
# stretches them for emulated (slow) nodes.
TIMEOUT_SCALE = _env_float("STANDIN_TIMEOUT_SCALE", 1.0)
CONNECT_TIMEOUT = 1.5 * TIMEOUT_SCALE
META_TIMEOUT = 3.0 * TIMEOUT_SCALE  # per send or read of any call, and a probe
DATA_TIMEOUT = 30.0 * TIMEOUT_SCALE  # for the answer to a call that stored data
META_DEADLINE = META_TIMEOUT + CONNECT_TIMEOUT + 0.5  # a metadata fan-out, all in
# A write call whose head arrives later than this is refused: its caller may have given
# up (no caller waits less than META_TIMEOUT for its first byte to be taken).
STALE_WRITE = META_TIMEOUT - 0.5
QUORUM_GRACE = 0.3  # how long to wait for stragglers once quorum has answered
PROBE_INTERVAL = 1.0
HEAL_INTERVAL = _env_float("STANDIN_HEAL_INTERVAL", 60.0)
TOMBSTONE_TTL = _env_float("STANDIN_TOMBSTONE_TTL", 600.0)  # then markers every drive has go
RETIRE_AFTER = 120.0  # how long a replaced version's data stays, for a revert
FSYNC = os.environ.get("STANDIN_FSYNC", "1") not in ("0", "false", "no")

READ_QUORUM = ("SlowDownRead", "Resource requested is unreadable, please reduce your request rate")
WRITE_QUORUM = (
    "SlowDownWrite",
    "Resource requested is unwritable, please reduce your request rate",
)


_LOG_LOCK = threading.Lock()


def log(message: str) -> None:
    # stdout, flushed: `docker service logs` shows it at once. One write per line under a
    # lock: print() writes the text and the newline apart, and threads interleave them.
    line = f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ} {message}\n"
    with _LOG_LOCK:
        sys.stdout.write(line)
        sys.stdout.flush()


# --------------------------------------------------------------------------- credentials


def _read_secret_file(name: str) -> str:
    path = Path(name)
    if not path.is_absolute():
        path = SECRETS_DIR / path  # docker secrets are mounted there
    return path.read_text().strip()


def _credential(names: tuple[str, ...]) -> str | None:
    """First of NAME_FILE / NAME for each name (new MinIO names before legacy ones)."""
    for name in names:
        if os.environ.get(f"{name}_FILE"):
            return _read_secret_file(os.environ[f"{name}_FILE"])
        if os.environ.get(name):
            return os.environ[name]
    return None


def load_root_credentials() -> tuple[str, str]:
    user = _credential(("MINIO_ROOT_USER", "MINIO_ACCESS_KEY"))
    password = _credential(("MINIO_ROOT_PASSWORD", "MINIO_SECRET_KEY"))
    if user is None and password is None:
        return DEFAULT_ROOT
    if not user or not password:
        raise SystemExit("s3_standin: root user and password must both be set")
    return user, password


# --------------------------------------------------------------------------- S3 errors


class S3Error(Exception):
    """An S3 error answer: code, message and HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


def read_quorum_error() -> S3Error:
    return S3Error(*READ_QUORUM, status=503)


def write_quorum_error() -> S3Error:
    return S3Error(*WRITE_QUORUM, status=503)


def _status_line(status: int | str) -> str:
    if isinstance(status, str):
        return status
    return f"{status} {HTTPStatus(status).phrase}"


def s3_error(
    start_response: Callable[..., Any],
    environ: dict[str, Any],
    code: str,
    message: str,
    status: int | str = "403 Forbidden",
) -> list[bytes]:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{_xml_escape(message)}</Message>"
        f"<Resource>{_xml_escape(environ.get('PATH_INFO', '/'))}</Resource>"
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    ).encode()
    _drain_body(environ)
    headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
    if str(status).startswith("503"):
        headers.append(("Retry-After", "1"))
    start_response(_status_line(status), headers)
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


def _xml_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def _drain_body(environ: dict[str, Any]) -> None:
    # An unread request body would be parsed as the next request on a keep-alive
    # connection, and closing with unread data resets the socket before the
    # client reads our error: read it and throw it away.
    stream = environ.get("wsgi.input")
    if stream is None:
        return
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    if environ.get("wsgi.input_terminated"):
        remaining = DRAIN_LIMIT_BYTES
    remaining = min(remaining, DRAIN_LIMIT_BYTES)
    while remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        remaining -= len(chunk)


# --------------------------------------------------------------------------- SigV4


@dataclass(frozen=True)
class Signed:
    """What a request says about its signer, extracted before any check."""

    access_key: str
    version: int  # 2 or 4
    presigned: bool
    fields: dict[str, str]  # SigV4: Credential, SignedHeaders, Signature (+ presigned extras)


_V4_HEADER = re.compile(r"AWS4-HMAC-SHA256\s+(.*)", re.S)


def parse_signature(environ: dict[str, Any]) -> Signed | None:
    """The signer of a request, or None when it is anonymous."""
    auth = environ.get("HTTP_AUTHORIZATION", "").strip()
    if auth:
        match = _V4_HEADER.match(auth)
        if match:
            fields = dict(
                part.strip().split("=", 1) for part in match.group(1).split(",") if "=" in part
            )
            access_key = fields.get("Credential", "").split("/", 1)[0]
            return Signed(access_key, 4, False, fields)
        if auth.startswith("AWS "):
            return Signed(auth[4:].split(":", 1)[0], 2, False, {})
        return Signed("", 0, False, {})  # unknown scheme: no valid key in it
    query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    if "X-Amz-Credential" in query:
        fields = {
            "Credential": query["X-Amz-Credential"],
            "SignedHeaders": query.get("X-Amz-SignedHeaders", ""),
            "Signature": query.get("X-Amz-Signature", ""),
            "Date": query.get("X-Amz-Date", ""),
            "Expires": query.get("X-Amz-Expires", ""),
        }
        return Signed(fields["Credential"].split("/", 1)[0], 4, True, fields)
    if "AWSAccessKeyId" in query:
        return Signed(query["AWSAccessKeyId"], 2, True, {})
    return None


def _aws_quote(text: str, safe: str = "-_.~") -> str:
    return quote(text, safe=safe)


def _canonical_query(raw_query: str, presigned: bool) -> str:
    pairs = []
    for item in raw_query.split("&") if raw_query else []:
        key, _, value = item.partition("=")
        key, value = unquote(key), unquote(value)
        if presigned and key == "X-Amz-Signature":
            continue
        pairs.append((_aws_quote(key), _aws_quote(value)))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _header_value(environ: dict[str, Any], name: str) -> str:
    key = name.upper().replace("-", "_")
    if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        key = f"HTTP_{key}"
    return " ".join(str(environ.get(key, "")).split())  # trim + collapse spaces


def _payload_hash(environ: dict[str, Any], presigned: bool) -> str:
    declared = environ.get("HTTP_X_AMZ_CONTENT_SHA256")
    if declared:
        return declared
    if presigned:
        return "UNSIGNED-PAYLOAD"
    # No declared hash: hash the body ourselves and hand the app a fresh copy.
    body = environ["wsgi.input"].read() if environ.get("wsgi.input") else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ.pop("wsgi.input_terminated", None)
    return hashlib.sha256(body).hexdigest()


def _candidate_uris(environ: dict[str, Any]) -> list[str]:
    # S3 signs the path as sent; clients differ on which characters they escape,
    # so accept the raw request path and a strict re-encoding of the decoded one.
    raw_path = urlsplit(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "").path
    strict = _aws_quote(
        environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace"), safe="-_.~/"
    )
    return list(dict.fromkeys(uri for uri in (raw_path, strict) if uri))


def _signing_key(secret: str, scope: list[str]) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in scope:  # date, region, service, "aws4_request"
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def verify_sigv4(environ: dict[str, Any], signed: Signed, secret: str) -> str | None:
    """None when the signature holds, else the S3 error code to answer with."""
    scope = signed.fields.get("Credential", "").split("/")[1:]
    signed_headers = signed.fields.get("SignedHeaders", "")
    signature = signed.fields.get("Signature", "")
    amz_date = signed.fields.get("Date") or environ.get("HTTP_X_AMZ_DATE", "")
    if len(scope) != 4 or not signed_headers or not signature or not amz_date:
        return "AuthorizationHeaderMalformed"
    if signed.presigned and _presign_expired(amz_date, signed.fields.get("Expires", "")):
        return "AccessDenied"
    headers = "".join(
        f"{name}:{_header_value(environ, name)}\n" for name in signed_headers.split(";")
    )
    query = _canonical_query(environ.get("QUERY_STRING", ""), signed.presigned)
    payload = _payload_hash(environ, signed.presigned)
    key = _signing_key(secret, scope)
    for uri in _candidate_uris(environ):
        canonical = "\n".join(
            [environ["REQUEST_METHOD"], uri, query, headers, signed_headers, payload]
        )
        to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256",
                amz_date,
                "/".join(scope),
                hashlib.sha256(canonical.encode()).hexdigest(),
            ]
        )
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, signature):
            return None
    return "SignatureDoesNotMatch"


def _presign_expired(amz_date: str, expires: str) -> bool:
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        lifetime = dt.timedelta(seconds=int(expires or 604800))
    except ValueError:
        return True
    return dt.datetime.now(dt.UTC) > signed_at + lifetime


# --------------------------------------------------------------------------- bucket policy


def anonymous_action(method: str, path: str, query: dict[str, str]) -> tuple[str, str] | None:
    """(s3 action, resource ARN) an anonymous request needs, or None if never allowed."""
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket:
        return None  # ListBuckets
    if key:
        action = _object_action(method, query)
        return (action, f"arn:aws:s3:::{bucket}/{key}") if action else None
    action = _bucket_action(method, query)
    return (action, f"arn:aws:s3:::{bucket}") if action else None


def _object_action(method: str, query: dict[str, str]) -> str | None:
    if "uploadId" in query:
        return {
            "GET": "s3:ListMultipartUploadParts",
            "PUT": "s3:PutObject",
            "POST": "s3:PutObject",
            "DELETE": "s3:AbortMultipartUpload",
        }.get(method)
    if set(query) - {"uploads", "partNumber", "versionId", "x-id"}:
        return None  # acl, tagging, retention, ...: not for anonymous users
    return {
        "GET": "s3:GetObject",
        "HEAD": "s3:GetObject",
        "PUT": "s3:PutObject",
        "POST": "s3:PutObject" if "uploads" in query else None,
        "DELETE": "s3:DeleteObject",
    }.get(method)


LISTING_PARAMS = frozenset(
    {
        "prefix",
        "delimiter",
        "marker",
        "max-keys",
        "list-type",
        "continuation-token",
        "start-after",
        "encoding-type",
        "fetch-owner",
        "x-id",
    }
)


def _bucket_action(method: str, query: dict[str, str]) -> str | None:
    if method in ("GET", "HEAD") and set(query) <= LISTING_PARAMS:
        return "s3:ListBucket"
    if method == "GET" and "uploads" in query:
        return "s3:ListBucketMultipartUploads"
    if method == "GET" and set(query) == {"location"}:
        return "s3:GetBucketLocation"
    if method == "POST" and "delete" in query:
        return "s3:DeleteObject"
    return None


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _is_public(principal: Any) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, dict) and "*" in _as_list(principal.get("AWS", []))


def _matches(patterns: Any, value: str) -> bool:
    return any(fnmatch.fnmatchcase(value, str(p)) for p in _as_list(patterns))


def policy_allows(policy_text: str | None, action: str, resource: str) -> bool:
    """Evaluate a bucket policy for an anonymous caller: explicit Deny wins."""
    if not policy_text:
        return False
    try:
        statements = _as_list(json.loads(policy_text).get("Statement", []))
    except (ValueError, AttributeError):
        return False
    allowed = False
    for st in statements:
        if not isinstance(st, dict) or not _is_public(st.get("Principal")):
            continue
        if not (
            _matches(st.get("Action", []), action) and _matches(st.get("Resource", []), resource)
        ):
            continue
        if st.get("Effect") == "Deny":
            return False
        unsupported = {"Condition", "NotAction", "NotResource", "NotPrincipal"} & set(st)
        if st.get("Effect") == "Allow" and not unsupported:
            allowed = True
    return allowed


# --------------------------------------------------------------------------- quorum model


def default_parity(drives: int) -> int:
    """MinIO's default parity (EC:N, storage class STANDARD) for a set of this many drives."""
    if drives <= 1:
        return 0
    if drives <= 3:
        return 1
    if drives <= 5:
        return 2
    if drives <= 7:
        return 3
    return 4


@dataclass(frozen=True)
class Quorum:
    """Read and write quorum of one erasure set, computed as MinIO does.

    ``read`` is the number of data drives (N - parity); ``write`` is the same, plus
    one when data equals parity, so that two writes can never both succeed on
    disjoint halves. read + write > drives always: every read quorum holds a drive
    of every write quorum.
    """

    drives: int
    parity: int

    @classmethod
    def for_drives(cls, drives: int, parity: int | None = None) -> Quorum:
        if drives < 1:
            raise ValueError("a set needs at least one drive")
        parity = default_parity(drives) if parity is None else parity
        if not 0 <= parity <= drives // 2:
            raise ValueError(f"parity {parity} is out of range for {drives} drives")
        return cls(drives, parity)

    @property
    def read(self) -> int:
        return self.drives - self.parity

    @property
    def write(self) -> int:
        data = self.drives - self.parity
        return data + 1 if data == self.parity else data

    def can_read(self, up: int) -> bool:
        return up >= self.read

    def can_write(self, up: int) -> bool:
        return up >= self.write


def parity_from_env() -> int | None:
    """``MINIO_STORAGE_CLASS_STANDARD=EC:2`` -> 2 (MinIO's own setting), else None."""
    value = os.environ.get("MINIO_STORAGE_CLASS_STANDARD", "").strip().upper()
    match = re.fullmatch(r"EC:(\d+)", value)
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------- command line

_ELLIPSIS = re.compile(r"\{([^{}]*?)\.\.\.([^{}]*?)\}")


def _ellipsis_range(low: str, high: str) -> list[str]:
    if low.isdigit() and high.isdigit():
        start, end = int(low), int(high)
        width = len(low) if low.startswith("0") and len(low) > 1 else 0
        if start > end:
            raise ValueError(f"bad range {{{low}...{high}}}")
        return [str(n).zfill(width) for n in range(start, end + 1)]
    if len(low) == len(high) == 1 and low.isalpha() and high.isalpha() and low <= high:
        return [chr(c) for c in range(ord(low), ord(high) + 1)]
    raise ValueError(f"bad range {{{low}...{high}}}")


def expand_ellipses(arg: str) -> list[str]:
    """MinIO's ``{1...4}`` notation: ``http://minio{1...4}/export`` -> four URLs."""
    match = _ELLIPSIS.search(arg)
    if not match:
        return [arg]
    head, tail = arg[: match.start()], arg[match.end() :]
    return [
        head + value + rest
        for value in _ellipsis_range(*match.groups())
        for rest in expand_ellipses(tail)
    ]


@dataclass(frozen=True)
class Endpoint:
    """One drive of the command line: a URL (host, port, path) or a local path."""

    host: str  # "" for a plain path
    port: int
    path: str

    def __str__(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}" if self.host else self.path


def parse_endpoints(args: list[str], default_port: int) -> list[Endpoint]:
    endpoints = []
    for text in (e for arg in args for e in expand_ellipses(arg)):
        if "://" in text:
            url = urlsplit(text)
            if url.scheme != "http":
                raise ValueError(f"{text}: only http:// endpoints (the stand-in has no TLS)")
            if not url.hostname or not url.path or url.path == "/":
                raise ValueError(f"{text}: an endpoint needs a host and a drive path")
            path = str(PurePosixPath(unquote(url.path)))
            endpoints.append(Endpoint(url.hostname, url.port or default_port, path))
        else:
            endpoints.append(Endpoint("", default_port, str(PurePosixPath(text))))
    if not endpoints:
        raise ValueError("no drives given")
    if len({bool(e.host) for e in endpoints}) > 1:
        raise ValueError("mixing URLs and local paths is not supported (nor is it by MinIO)")
    if len(set(endpoints)) != len(endpoints):
        raise ValueError("the same drive is given twice")
    return endpoints


def parse_address(address: str) -> tuple[str, int]:
    """MinIO's ``--address``: ``:9000``, ``HOST:9000`` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep:
        return "", int(address)
    return host.strip("[]"), int(port)


def _resolve(host: str, seconds: float = 2.0) -> list[str]:
    """Addresses of a name, or [] when it does not resolve within a few seconds."""
    found: list[str] = []

    def lookup() -> None:
        with contextlib.suppress(OSError):
            found.extend({info[4][0] for info in socket.getaddrinfo(host, None)})

    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(seconds)
    return list(found)


def _bindable(ip: str) -> bool:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((ip, 0))
        except OSError:
            return False
    return True


def is_local(endpoint: Endpoint, listen_host: str, listen_port: int, hostname: str) -> bool:
    """Is this drive ours? A path is; a URL is when its port is ours and its host is us."""
    if not endpoint.host:
        return True
    if endpoint.port != listen_port:
        return False
    host = endpoint.host.lower()
    if host in {hostname.lower(), hostname.split(".")[0].lower(), "localhost"}:
        return True
    if listen_host and host == listen_host.lower():
        return True
    return any(_bindable(ip) for ip in _resolve(host))


# --------------------------------------------------------------------------- records


class _StampClock:
    """Version stamps: nanoseconds since the epoch (never twice the same), then a
    random suffix so that two instances never mint equal stamps. Newer sorts later."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last = 0

    def __call__(self) -> str:
        with self.lock:
            self.last = max(time.time_ns(), self.last + 1)
            now = self.last
        return f"{now:019d}-{uuid.uuid4().hex[:8]}"


new_stamp = _StampClock()


def stamp_time(stamp: str) -> float:
    return int(stamp[:19]) / 1e9


def newest(records: Iterable[Record | None]) -> Record | None:
    best = None
    for rec in records:
        if rec is not None and (best is None or rec["stamp"] > best["stamp"]):
            best = rec
    return best


def live_bucket(rec: Record | None) -> Record | None:
    return rec if rec is not None and not rec.get("deleted") else None


def _iso(stamp: str) -> str:
    moment = dt.datetime.fromtimestamp(stamp_time(stamp), dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _http_date(stamp: str) -> str:
    return email.utils.formatdate(stamp_time(stamp), usegmt=True)


# --------------------------------------------------------------------------- data sources


class FdReader(io.RawIOBase):
    """Reads a byte range of open files laid end to end, with pread: many readers may
    share the same descriptors."""

    def __init__(self, segments: list[tuple[int, int]], offset: int, length: int) -> None:
        super().__init__()
        self.segments, self.pos, self.end = segments, offset, offset + length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.end - self.pos)
        start = 0
        for fd, size in self.segments:
            if want > 0 and self.pos < start + size:
                data = os.pread(fd, min(want, start + size - self.pos), self.pos - start)
                buffer[: len(data)] = data
                self.pos += len(data)
                return len(data)
            start += size
        return 0


class Source:
    """Bytes to store on several drives at once: open files (one, or an object's parts
    end to end) that each drive reads with its own reader. ``owned`` files (staged
    request bodies) are removed on close."""

    def __init__(self, paths: Path | list[Path], size: int, owned: bool, md5: str = "") -> None:
        self.paths = [paths] if isinstance(paths, Path) else list(paths)
        self.size, self.owned, self.md5 = size, owned, md5
        self._closed = False
        self._lock = threading.Lock()
        self.segments: list[tuple[int, int]] = []
        try:
            for path in self.paths:
                fd = os.open(path, os.O_RDONLY)
                self.segments.append((fd, os.fstat(fd).st_size))
            if sum(n for _, n in self.segments) != size:
                raise DriveError(f"{self.paths[:1]}: {size} bytes expected")
        except BaseException:
            self.close()
            raise

    def reader(self) -> FdReader:
        return FdReader(self.segments, 0, self.size)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for fd, _ in self.segments:
            os.close(fd)
        if self.owned:
            for path in self.paths:
                with contextlib.suppress(OSError):
                    path.unlink()


class FileChain(io.RawIOBase):
    """A byte range of files laid end to end (an object's data on a drive), opened one
    at a time; the first one at once, so that a missing version fails before any byte."""

    def __init__(self, segments: list[tuple[Path, int]], offset: int, length: int) -> None:
        super().__init__()
        self.segments, self.pos, self.end, self.length = segments, offset, offset + length, length
        self.handle: BinaryIO | None = None
        self.handle_end = 0
        try:
            self._open()
        except FileNotFoundError as exc:
            raise NotFound(str(segments[0][0] if segments else "")) from exc

    def readable(self) -> bool:
        return True

    def _open(self) -> None:
        start = 0
        for path, size in self.segments:
            if self.pos < start + size and self.pos < self.end:
                self.handle = open(path, "rb")  # noqa: SIM115 - closed in readinto/close
                self.handle.seek(self.pos - start)
                self.handle_end = start + size
                return
            start += size

    def readinto(self, buffer: Any) -> int:
        if self.handle is None:
            self._open()
            if self.handle is None:
                return 0
        want = min(len(buffer), self.end - self.pos, self.handle_end - self.pos)
        got = self.handle.readinto(memoryview(buffer)[:want])  # type: ignore[attr-defined]
        if not got:
            raise OSError(f"object data ended {self.end - self.pos} bytes early")
        self.pos += got
        if self.pos >= self.handle_end:
            self.handle.close()
            self.handle = None
        return got

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
        super().close()


def _fsync_file(handle: BinaryIO) -> None:
    if FSYNC:
        handle.flush()
        os.fsync(handle.fileno())


def copy_stream(
    source: Any, target: BinaryIO, length: int | None, hashers: Iterable[Any] = ()
) -> int:
    """Copy ``length`` bytes (all when None) and feed the hashers; returns bytes copied."""
    copied = 0
    hashers = list(hashers)
    while length is None or copied < length:
        want = COPY_BLOCK if length is None else min(COPY_BLOCK, length - copied)
        chunk = source.read(want)
        if not chunk:
            break
        target.write(chunk)
        for hasher in hashers:
            hasher.update(chunk)
        copied += len(chunk)
    return copied


class AwsChunkedReader(io.RawIOBase):
    """Decodes an aws-chunked body (``STREAMING-*`` payloads); chunk signatures are not
    checked, trailers (checksums) are skipped."""

    def __init__(self, stream: Any) -> None:
        super().__init__()
        self.stream, self.left, self.done = stream, 0, False

    def readable(self) -> bool:
        return True

    def _readline(self) -> bytes:
        line = bytearray()
        while not line.endswith(b"\n") and len(line) < 4096:
            char = self.stream.read(1)
            if not char:
                break
            line += char
        return bytes(line)

    def readinto(self, buffer: Any) -> int:
        if self.done:
            return 0
        if self.left == 0:
            header = self._readline()
            try:
                size = int(header.split(b";", 1)[0].strip() or b"0", 16)
            except ValueError as exc:
                raise S3Error("IncompleteBody", "The aws-chunked body is malformed.") from exc
            if size == 0:
                while self._readline().strip():
                    pass  # trailers
                self.done = True
                return 0
            self.left = size
        data = self.stream.read(min(len(buffer), self.left))
        if not data:
            raise S3Error("IncompleteBody", "The request body ended early.")
        self.left -= len(data)
        if self.left == 0:
            self._readline()  # CRLF after the chunk
        buffer[: len(data)] = data
        return len(data)


def stage_body(environ: dict[str, Any], tmp_dir: Path) -> Source:
    """Stream a request body to a file on a drive, checking its length and digests."""
    stream = environ["wsgi.input"]
    declared = environ.get("HTTP_X_AMZ_CONTENT_SHA256", "")
    length: int | None = int(environ.get("CONTENT_LENGTH") or 0)
    if declared.startswith("STREAMING-") or "aws-chunked" in environ.get(
        "HTTP_CONTENT_ENCODING", ""
    ):
        stream = AwsChunkedReader(stream)
        decoded = environ.get("HTTP_X_AMZ_DECODED_CONTENT_LENGTH")
        length = int(decoded) if decoded else None
    elif environ.get("wsgi.input_terminated"):
        length = None
    md5 = hashlib.md5(usedforsecurity=False)
    hashers: list[Any] = [md5]
    sha = None
    if re.fullmatch(r"[0-9a-f]{64}", declared):
        sha = hashlib.sha256()
        hashers.append(sha)
    path = tmp_dir / f"stage-{uuid.uuid4().hex}"
    try:
        with open(path, "wb") as out:
            size = copy_stream(stream, out, length, hashers)
            _fsync_file(out)
        if length is not None and size != length:
            raise S3Error("IncompleteBody", "You did not provide the number of bytes specified.")
        content_md5 = environ.get("HTTP_CONTENT_MD5")
        if content_md5 and base64.b64encode(md5.digest()).decode() != content_md5.strip():
            raise S3Error("BadDigest", "The Content-Md5 you specified did not match.")
        if sha is not None and sha.hexdigest() != declared:
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            )
        return Source(path, size, owned=True, md5=md5.hexdigest())
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


# --------------------------------------------------------------------------- drives


class NotFound(Exception):
    """The drive does not hold that version (any more)."""


class DriveOffline(Exception):
    """The drive's instance did not answer (refused, timed out, unresolvable, skipped)."""


class DriveError(Exception):
    """The drive's instance answered with an error."""


def _write_json(path: Path, record: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as out:
        out.write(json.dumps(record, sort_keys=True).encode())
        _fsync_file(out)
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


class LocalDrive:
    """A drive in a directory of this instance. Layout under ``DIR/.standin/``:

    ``buckets/B.json``; ``objects/B/HH/H.json`` (H = sha256 of the key) with the data in
    ``H.STAMP.data``; ``uploads/B/ID/upload.json``, ``part-NNNNN.json`` and
    ``part-NNNNN.STAMP.data``; ``tmp/``. The index of records stays in memory.
    """

    local = True

    def __init__(self, root: Path) -> None:
        self.root = root
        self.name = str(root)
        self.base = root / ".standin"
        self.tmp = self.base / "tmp"
        self.lock = threading.RLock()
        self.buckets: dict[str, Record] = {}
        self.objects: dict[str, dict[str, Record]] = {}
        self.uploads: dict[str, dict[str, Record]] = {}
        self.parts: dict[tuple[str, str], dict[int, Record]] = {}
        self.retired: list[tuple[float, Path]] = []
        self._load()

    def available(self) -> bool:
        return True

    # -- loading

    def _load(self) -> None:
        for sub in ("buckets", "objects", "uploads", "tmp"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():  # writes cut short by a crash
            with contextlib.suppress(OSError):
                leftover.unlink()
        for path in (self.base / "buckets").glob("*.json"):
            rec = _read_json(path)
            if rec:
                self.buckets[rec["name"]] = rec
        for bucket_dir in (self.base / "objects").iterdir():
            self.objects[bucket_dir.name] = self._load_objects(bucket_dir)
        for bucket_dir in (self.base / "uploads").iterdir():
            uploads = self.uploads.setdefault(bucket_dir.name, {})
            for upload_dir in bucket_dir.iterdir():
                rec = _read_json(upload_dir / "upload.json")
                if rec is None:
                    shutil.rmtree(upload_dir, ignore_errors=True)
                    continue
                uploads[rec["id"]] = rec
                self.parts[(bucket_dir.name, rec["id"])] = self._load_parts(upload_dir, rec)

    def _load_objects(self, bucket_dir: Path) -> dict[str, Record]:
        index: dict[str, Record] = {}
        for shard in bucket_dir.iterdir():
            records = {p.stem: _read_json(p) for p in shard.glob("*.json")}
            for rec in records.values():
                if rec:
                    index[rec["key"]] = rec
            for data in shard.glob("*.data"):
                digest, _, rest = data.name.partition(".")
                rec = records.get(digest)
                if not rec or rec.get("deleted") or not rest.startswith(f"{rec['stamp']}."):
                    data.unlink()  # data without its record: a write cut short
        return index

    def _load_parts(self, upload_dir: Path, upload: Record) -> dict[int, Record]:
        parts: dict[int, Record] = {}
        if upload.get("state") != "open":
            for leftover in upload_dir.glob("part-*"):
                leftover.unlink()
            return parts
        for path in upload_dir.glob("part-*.json"):
            rec = _read_json(path)
            if rec:
                parts[rec["number"]] = rec
        for data in upload_dir.glob("part-*.data"):
            number = int(data.name[5:10])
            if parts.get(number, {}).get("stamp") != data.name[11:-5]:
                data.unlink()
        return parts

    # -- helpers

    def _object_dir(self, bucket: str, key: str) -> tuple[Path, str]:
        digest = _key_hash(key)
        return self.base / "objects" / bucket / digest[:2], digest

    def object_files(self, bucket: str, key: str, stamp: str) -> list[Path]:
        """The data of one version: ``H.STAMP.data``, or its parts ``H.STAMP.pNNNNN.data``."""
        folder, digest = self._object_dir(bucket, key)
        return sorted(folder.glob(f"{digest}.{stamp}.*data"))

    def _upload_dir(self, bucket: str, upload_id: str) -> Path:
        return self.base / "uploads" / bucket / upload_id

    def part_path(self, bucket: str, upload_id: str, number: int, stamp: str) -> Path:
        return self._upload_dir(bucket, upload_id) / f"part-{number:05d}.{stamp}.data"

    def _ingest(self, source: Source) -> list[Path]:
        """A private copy of the source in tmp/: hard links when on the same file system
        (data files are never changed, only replaced), else one copied file."""
        links: list[Path] = []
        try:
            for path in source.paths:
                links.append(self.tmp / f"in-{uuid.uuid4().hex}")
                os.link(path, links[-1])
            return links
        except OSError:
            for link in links:
                with contextlib.suppress(OSError):
                    link.unlink()
        tmp = self.tmp / f"in-{uuid.uuid4().hex}"
        with open(tmp, "wb") as out:
            copied = copy_stream(source.reader(), out, source.size)
            _fsync_file(out)
        if copied != source.size:
            tmp.unlink()
            raise DriveError(f"short source: {copied} of {source.size} bytes")
        return [tmp]

    def _link_into_tmp(self, paths: list[Path]) -> list[Path]:
        """Hard links (copies across file systems) of data files in tmp/."""
        made: list[Path] = []
        try:
            for path in paths:
                made.append(self.tmp / f"ln-{uuid.uuid4().hex}")
                try:
                    os.link(path, made[-1])
                except FileNotFoundError:
                    raise
                except OSError:
                    shutil.copyfile(path, made[-1])
            return made
        except BaseException:
            for tmp in made:
                with contextlib.suppress(OSError):
                    tmp.unlink()
            raise

    @staticmethod
    def _chain(paths: list[Path], offset: int, length: int | None) -> FileChain:
        try:
            segments = [(p, p.stat().st_size) for p in paths]
        except FileNotFoundError as exc:
            raise NotFound(str(paths[0])) from exc
        if not segments:
            raise NotFound("no such version")
        total = sum(size for _, size in segments)
        return FileChain(segments, offset, total - offset if length is None else length)

    def _retire(self, path: Path) -> None:
        """Delete a replaced version's data later, not now: a write that misses quorum is
        taken back (``revert``), and readers may still be streaming it."""
        now = time.monotonic()
        expired = [p for when, p in self.retired if when <= now]
        self.retired = [(when, p) for when, p in self.retired if when > now]
        self.retired.append((now + RETIRE_AFTER, path))
        for old in expired:
            with contextlib.suppress(OSError):
                old.unlink()

    def _unretire(self, folder: Path, prefix: str) -> bool:
        """Keep the retired files of one version (``prefix`` H.STAMP.); True if all are there."""
        mine = [p for _, p in self.retired if p.parent == folder and p.name.startswith(prefix)]
        self.retired = [(when, p) for when, p in self.retired if p not in mine]
        return bool(mine) and all(p.exists() for p in mine)

    @staticmethod
    def _stored(prev: Record | None) -> Record:
        return {"stored": True, "prev": prev}

    NOT_STORED: Record = {"stored": False, "prev": None}  # it holds that version or a newer one

    # -- buckets

    def bucket(self, name: str) -> Record | None:
        with self.lock:
            return self.buckets.get(name)

    def list_buckets(self) -> list[Record]:
        with self.lock:
            return list(self.buckets.values())

    def put_bucket(self, rec: Record) -> Record:
        name = rec["name"]
        with self.lock:
            current = self.buckets.get(name)
            if current and current["stamp"] >= rec["stamp"]:
                return self.NOT_STORED
            _write_json(self.base / "buckets" / f"{name}.json", rec)
            self.buckets[name] = rec
            if rec.get("deleted") or (current and current.get("created") != rec.get("created")):
                # What the bucket held is gone (its records are older than the bucket).
                self.objects.pop(name, None)
                for upload_id in self.uploads.pop(name, {}):
                    self.parts.pop((name, upload_id), None)
                shutil.rmtree(self.base / "objects" / name, ignore_errors=True)
                shutil.rmtree(self.base / "uploads" / name, ignore_errors=True)
        return self._stored(current)

    # -- objects

    def stat(self, bucket: str, key: str | None) -> Record:
        with self.lock:
            obj = self.objects.get(bucket, {}).get(key) if key is not None else None
            return {"bucket": self.buckets.get(bucket), "object": obj}

    def list_objects(self, bucket: str, prefix: str, start: str = "", limit: int = 0) -> Record:
        """Records (delete markers too) under a prefix after ``start``: all of them, or
        the first ``limit`` in key order (``truncated`` says whether more follow)."""
        with self.lock:
            found = [
                r
                for k, r in self.objects.get(bucket, {}).items()
                if k.startswith(prefix) and k > start
            ]
            brec = self.buckets.get(bucket)
        truncated = bool(limit) and len(found) > limit
        if limit:
            found = heapq.nsmallest(limit, found, key=lambda r: r["key"])
        return {"bucket": brec, "objects": found, "truncated": truncated}

    def forget(self, kind: str, bucket: str, ident: str, stamp: str) -> bool:
        """Drop a delete marker (``object``) or a finished upload (``upload``) that every
        drive holds: no drive has an older state that could come back."""
        with self.lock:
            if kind == "object":
                current = self.objects.get(bucket, {}).get(ident)
                if not current or current["stamp"] != stamp or not current.get("deleted"):
                    return False
                folder, digest = self._object_dir(bucket, ident)
                with contextlib.suppress(OSError):
                    (folder / f"{digest}.json").unlink()
                del self.objects[bucket][ident]
                return True
            current = self.uploads.get(bucket, {}).get(ident)
            if not current or current["stamp"] != stamp or current["state"] == "open":
                return False
            shutil.rmtree(self._upload_dir(bucket, ident), ignore_errors=True)
            del self.uploads[bucket][ident]
            self.parts.pop((bucket, ident), None)
            return True

    def open_data(
        self, bucket: str, key: str, stamp: str, offset: int = 0, length: int | None = None
    ) -> FileChain:
        return self._chain(self.object_files(bucket, key, stamp), offset, length)

    def put_object(self, bucket: str, rec: Record, source: Source | None) -> Record:
        files = None if rec.get("deleted") or source is None else self._ingest(source)
        return self._commit_object(bucket, rec, files)

    def copy_object(
        self, src_bucket: str, src_key: str, src_stamp: str, bucket: str, rec: Record
    ) -> Record:
        """Store ``rec`` with the data of another object this drive holds: hard links,
        so a copy costs no I/O (the registry moves every blob it receives)."""
        try:
            files = self._link_into_tmp(self.object_files(src_bucket, src_key, src_stamp))
        except OSError:
            return {"assembled": False}
        if not files or sum(f.stat().st_size for f in files) != rec["size"]:
            for tmp in files:
                tmp.unlink()
            return {"assembled": False}
        return {"assembled": True, **self._commit_object(bucket, rec, files)}

    def _commit_object(self, bucket: str, rec: Record, files: list[Path] | None) -> Record:
        folder, digest = self._object_dir(bucket, rec["key"])
        with self.lock:
            current = self.objects.get(bucket, {}).get(rec["key"])
            if current and current["stamp"] >= rec["stamp"]:
                for tmp in files or []:
                    tmp.unlink()
                return self.NOT_STORED
            folder.mkdir(parents=True, exist_ok=True)
            if files and len(files) == 1:
                os.replace(files[0], folder / f"{digest}.{rec['stamp']}.data")
            for n, tmp in enumerate(files if files and len(files) > 1 else [], start=1):
                os.replace(tmp, folder / f"{digest}.{rec['stamp']}.p{n:05d}.data")
            _write_json(folder / f"{digest}.json", rec)
            self.objects.setdefault(bucket, {})[rec["key"]] = rec
            if current and not current.get("deleted"):
                for old in self.object_files(bucket, rec["key"], current["stamp"]):
                    self._retire(old)
        return self._stored(current)

    def put_tombstones(self, bucket: str, records: list[Record]) -> list[Record]:
        return [self._commit_object(bucket, rec, None) for rec in records]

    # -- multipart uploads

    def list_uploads(self, bucket: str, prefix: str) -> Record:
        with self.lock:
            uploads = [
                r for r in self.uploads.get(bucket, {}).values() if r["key"].startswith(prefix)
            ]
            return {"bucket": self.buckets.get(bucket), "uploads": uploads}

    def upload(self, bucket: str, upload_id: str) -> Record:
        with self.lock:
            return {
                "bucket": self.buckets.get(bucket),
                "upload": self.uploads.get(bucket, {}).get(upload_id),
                "parts": list(self.parts.get((bucket, upload_id), {}).values()),
            }

    def put_upload(self, bucket: str, rec: Record) -> Record:
        folder = self._upload_dir(bucket, rec["id"])
        with self.lock:
            current = self.uploads.get(bucket, {}).get(rec["id"])
            if current and current["stamp"] >= rec["stamp"]:
                return self.NOT_STORED
            folder.mkdir(parents=True, exist_ok=True)
            _write_json(folder / "upload.json", rec)
            self.uploads.setdefault(bucket, {})[rec["id"]] = rec
            if rec["state"] != "open":
                self.parts.pop((bucket, rec["id"]), None)
                for leftover in folder.glob("part-*"):
                    with contextlib.suppress(OSError):
                        leftover.unlink()
        return self._stored(current)

    def put_part(self, bucket: str, upload_id: str, rec: Record, source: Source) -> Record:
        (tmp,) = self._ingest(source)  # parts arrive as one staged file
        folder = self._upload_dir(bucket, upload_id)
        number = rec["number"]
        with self.lock:
            upload = self.uploads.get(bucket, {}).get(upload_id)
            parts = self.parts.setdefault((bucket, upload_id), {})
            current = parts.get(number)
            stale = upload is not None and upload["state"] != "open"
            if stale or (current and current["stamp"] >= rec["stamp"]):
                tmp.unlink()
                return self.NOT_STORED
            folder.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, folder / f"part-{number:05d}.{rec['stamp']}.data")
            _write_json(folder / f"part-{number:05d}.json", rec)
            parts[number] = rec
            if current:
                self._retire(folder / f"part-{number:05d}.{current['stamp']}.data")
        return self._stored(current)

    def open_part(self, bucket: str, upload_id: str, number: int, stamp: str) -> FileChain:
        return self._chain([self.part_path(bucket, upload_id, number, stamp)], 0, None)

    def complete(self, bucket: str, upload_id: str, rec: Record, parts: list[list[Any]]) -> Record:
        """Make the object of this drive's own copies of the parts, hard-linked as its
        data files (no copy, as MinIO keeps an object's parts). ``assembled`` is False
        when the drive lacks a part: the coordinator then sends it the whole object."""
        with self.lock:
            have = self.parts.get((bucket, upload_id), {})
            if not all(have.get(n, {}).get("stamp") == stamp for n, stamp in parts):
                return {"assembled": False}
        paths = [self.part_path(bucket, upload_id, n, stamp) for n, stamp in parts]
        try:
            files = self._link_into_tmp(paths)
        except OSError:
            return {"assembled": False}
        if sum(f.stat().st_size for f in files) != rec["size"]:
            for tmp in files:
                tmp.unlink()
            return {"assembled": False}
        return {"assembled": True, **self._commit_object(bucket, rec, files)}

    # -- taking back a write that missed quorum

    def revert(self, kind: str, bucket: str, ident: str, stamp: str, prev: Record | None) -> bool:
        """Put back ``prev`` where this drive still holds version ``stamp`` (of an object
        key, a bucket name, an upload id, or UPLOAD/NUMBER of a part)."""
        with self.lock:
            if kind == "object":
                index = self.objects.setdefault(bucket, {})
                folder, digest = self._object_dir(bucket, ident)
                record_path, data = folder / f"{digest}.json", f"{digest}.{{}}."
            elif kind == "part":
                upload_id, _, number = ident.partition("/")
                index = self.parts.setdefault((bucket, upload_id), {})  # type: ignore[assignment]
                ident = int(number)  # type: ignore[assignment]
                folder = self._upload_dir(bucket, upload_id)
                record_path, data = (
                    folder / f"part-{int(number):05d}.json",
                    f"part-{int(number):05d}.{{}}.",
                )
            elif kind == "upload":
                index = self.uploads.setdefault(bucket, {})
                record_path, data = self._upload_dir(bucket, ident) / "upload.json", ""
            else:
                index = self.buckets
                record_path, data = self.base / "buckets" / f"{ident}.json", ""
            current = index.get(ident)
            if current is None or current["stamp"] != stamp:
                return False
            has_data = data and not current.get("deleted")
            restorable = not (prev and data and not prev.get("deleted")) or self._unretire(
                record_path.parent,
                data.format(prev["stamp"]),  # type: ignore[index]
            )
            if not restorable:
                prev = None  # its bytes are gone: better missing (healed later) than broken
            if prev:
                _write_json(record_path, prev)
                index[ident] = prev
            else:
                with contextlib.suppress(OSError):
                    record_path.unlink()
                del index[ident]
            if has_data:
                for path in record_path.parent.glob(f"{data.format(stamp)}*data"):
                    with contextlib.suppress(OSError):
                        path.unlink()
        return True


# --------------------------------------------------------------------------- peers


class PeerAuth:
    """Peer calls carry ``X-Standin-Auth: TS:HMAC``, an HMAC-SHA256 of method, target and
    timestamp under a key derived from the root credentials (shared by every instance).
    Bodies are not covered. Reads are accepted for 15 minutes (clock skew); writes only
    while the caller still waits for them (``STALE_WRITE``): a frozen instance that
    wakes up must not apply a write its caller gave up on (and may have taken back)."""

    MAX_SKEW = 900

    def __init__(self, user: str, secret: str) -> None:
        self.key = hashlib.sha256(f"standin-peer\0{user}\0{secret}".encode()).digest()

    def _mac(self, method: str, target: str, ts: str) -> str:
        return hmac.new(self.key, f"{method}\n{target}\n{ts}".encode(), hashlib.sha256).hexdigest()

    def sign(self, method: str, target: str) -> str:
        ts = f"{time.time():.3f}"
        return f"{ts}:{self._mac(method, target, ts)}"

    def age(self, method: str, target: str, value: str) -> float | None:
        """Seconds since a valid call was signed; None when it is not valid."""
        ts, _, mac = value.partition(":")
        try:
            age = time.time() - float(ts)
        except ValueError:
            return None
        if abs(age) > self.MAX_SKEW or not hmac.compare_digest(self._mac(method, target, ts), mac):
            return None
        return age

    def verify(self, method: str, target: str, value: str) -> bool:
        return self.age(method, target, value) is not None


class Peer:
    """Another instance. ``offline`` after a call to it failed, ``online`` after its
    probe answered; calls skip an offline peer, so a dead or frozen one costs a
    request at most once (the first call that found out)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.state = "unknown"
        self.lock = threading.Lock()
        self.on_online: Callable[[], None] = lambda: None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    def usable(self) -> bool:
        return self.state != "offline"

    def mark(self, state: str, reason: str = "") -> None:
        with self.lock:
            changed, self.state = self.state != state, state
        if changed:
            log(f"peer {self} {state}" + (f" ({reason})" if reason else ""))
            if state == "online":
                self.on_online()

    def request(
        self,
        method: str,
        target: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        wait: float = META_TIMEOUT,
    ) -> PeerResponse:
        """One call. Connecting, each send and each read of the answer's body may take
        META_TIMEOUT (a live peer reads and writes steadily); the answer's head may take
        ``wait`` after the body is sent (a peer fsyncs a large object before answering)."""
        conn = http.client.HTTPConnection(
            self.host, self.port, timeout=CONNECT_TIMEOUT, blocksize=256 * 1024
        )
        try:
            conn.connect()
            assert conn.sock is not None
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sock.settimeout(META_TIMEOUT)
            conn.request(method, target, body=body, headers=headers or {})
            conn.sock.settimeout(wait)
            response = conn.getresponse()
            conn.sock.settimeout(META_TIMEOUT)
            return PeerResponse(conn, response)
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            self.mark("offline", f"{type(exc).__name__}: {exc}".rstrip(": "))
            raise DriveOffline(str(self)) from exc

    def probe(self) -> None:
        try:
            with self.request("GET", "/minio/health/live", headers=PROBE_HEADERS) as response:
                response.read()
                ok = response.status == 200
        except DriveOffline:
            return  # marked offline by request()
        if ok:
            self.mark("online")
        else:
            self.mark("offline", f"health answered {response.status}")


class PeerResponse(io.RawIOBase):
    """A peer's answer, readable as a stream; closing it closes the connection."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse):
        super().__init__()
        self.conn, self.response = conn, response
        self.status = response.status

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            return self.response.readinto(buffer)
        except (OSError, http.client.HTTPException) as exc:
            raise DriveError(f"read from peer: {exc}") from exc

    def read_all(self) -> bytes:
        try:
            return self.response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise DriveError(f"read from peer: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.response.close()
        self.conn.close()
        super().close()


def _b64json(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def _unb64json(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text.encode()))


class RemoteDrive:
    """A drive of another instance, reached through its internal API."""

    local = False

    def __init__(self, peer: Peer, path: str, auth: PeerAuth) -> None:
        self.peer, self.path, self.auth = peer, path, auth
        self.name = f"http://{peer}{path}"

    def available(self) -> bool:
        return self.peer.usable()

    def _call(
        self,
        method: str,
        op: str,
        params: dict[str, Any],
        body: Any = None,
        headers: dict[str, str] | None = None,
        wait: float = META_TIMEOUT,
    ) -> PeerResponse:
        if not self.peer.usable():
            raise DriveOffline(str(self.peer))
        target = f"{INTERNAL_PREFIX}{op}?{urlencode({'drive': self.path, **params})}"
        all_headers = {**(headers or {}), AUTH_HEADER: self.auth.sign(method, target)}
        if body is None and method in ("PUT", "POST"):
            body = b""
        return self.peer.request(method, target, body, all_headers, wait)

    def _json(self, method: str, op: str, params: dict[str, Any], **kw: Any) -> Any:
        with self._call(method, op, params, **kw) as response:
            data = response.read_all()
            if response.status != 200:
                raise DriveError(f"{self.name} {op}: HTTP {response.status} {data[:200]!r}")
        return json.loads(data)

    def _stream(self, op: str, params: dict[str, Any]) -> PeerResponse:
        response = self._call("GET", op, params)
        if response.status == 200:
            return response
        response.read_all()
        response.close()
        if response.status == 404:
            raise NotFound(f"{self.name} {op}")
        raise DriveError(f"{self.name} {op}: HTTP {response.status}")

    def _send(self, op: str, params: dict[str, Any], rec: Record, source: Source | None) -> Any:
        size = source.size if source is not None else 0
        headers = {RECORD_HEADER: _b64json(rec), "Content-Length": str(size)}
        body = source.reader() if source is not None else b""
        return self._json("PUT", op, params, body=body, headers=headers, wait=DATA_TIMEOUT)

    # the same methods as LocalDrive

    def bucket(self, name: str) -> Record | None:
        return self._json("GET", "stat", {"bucket": name})["bucket"]

    def list_buckets(self) -> list[Record]:
        return self._json("GET", "buckets", {})

    def put_bucket(self, rec: Record) -> Record:
        return self._json("PUT", "bucket", {}, body=json.dumps(rec).encode())

    def stat(self, bucket: str, key: str | None) -> Record:
        params = {"bucket": bucket} if key is None else {"bucket": bucket, "key": key}
        return self._json("GET", "stat", params)

    def list_objects(self, bucket: str, prefix: str, start: str = "", limit: int = 0) -> Record:
        params = {"bucket": bucket, "prefix": prefix, "start": start, "limit": limit}
        return self._json("GET", "objects", params)

    def forget(self, kind: str, bucket: str, ident: str, stamp: str) -> bool:
        params = {"kind": kind, "bucket": bucket, "ident": ident, "stamp": stamp}
        return self._json("POST", "forget", params)["forgotten"]

    def open_data(
        self, bucket: str, key: str, stamp: str, offset: int = 0, length: int | None = None
    ) -> BinaryIO:
        params = {"bucket": bucket, "key": key, "stamp": stamp, "offset": offset}
        if length is not None:
            params["length"] = length
        return self._stream("data", params)  # type: ignore[return-value]

    def put_object(self, bucket: str, rec: Record, source: Source | None) -> Record:
        if rec.get("deleted"):
            source = None
        return self._send("object", {"bucket": bucket}, rec, source)

    def put_tombstones(self, bucket: str, records: list[Record]) -> list[Record]:
        body = json.dumps(records).encode()
        return self._json("POST", "tombstones", {"bucket": bucket}, body=body)["results"]

    def list_uploads(self, bucket: str, prefix: str) -> Record:
        return self._json("GET", "uploads", {"bucket": bucket, "prefix": prefix})

    def upload(self, bucket: str, upload_id: str) -> Record:
        return self._json("GET", "upload", {"bucket": bucket, "upload": upload_id})

    def put_upload(self, bucket: str, rec: Record) -> Record:
        body = json.dumps(rec).encode()
        return self._json("PUT", "upload", {"bucket": bucket}, body=body)

    def put_part(self, bucket: str, upload_id: str, rec: Record, source: Source) -> Record:
        return self._send("part", {"bucket": bucket, "upload": upload_id}, rec, source)

    def open_part(self, bucket: str, upload_id: str, number: int, stamp: str) -> BinaryIO:
        params = {"bucket": bucket, "upload": upload_id, "number": number, "stamp": stamp}
        return self._stream("part", params)  # type: ignore[return-value]

    def complete(self, bucket: str, upload_id: str, rec: Record, parts: list[list[Any]]) -> Record:
        body = json.dumps({"record": rec, "parts": parts}).encode()
        params = {"bucket": bucket, "upload": upload_id}
        return self._json("POST", "complete", params, body=body, wait=DATA_TIMEOUT * 4)

    def copy_object(
        self, src_bucket: str, src_key: str, src_stamp: str, bucket: str, rec: Record
    ) -> Record:
        job = {"src_bucket": src_bucket, "src_key": src_key, "src_stamp": src_stamp, "rec": rec}
        body = json.dumps(job).encode()
        return self._json("POST", "copy", {"bucket": bucket}, body=body, wait=DATA_TIMEOUT * 4)

    def revert(self, kind: str, bucket: str, ident: str, stamp: str, prev: Record | None) -> bool:
        job = {"kind": kind, "bucket": bucket, "ident": ident, "stamp": stamp, "prev": prev}
        return self._json("POST", "revert", {}, body=json.dumps(job).encode())["reverted"]


Drive = LocalDrive | RemoteDrive


# --------------------------------------------------------------------------- fan-out


@dataclass
class Answer:
    drive: Drive
    ok: bool
    value: Any  # the result, or the exception


def fan_out(
    drives: list[Drive],
    call: Callable[[Drive], Any],
    need: int,
    *,
    grace: float = QUORUM_GRACE,
    deadline: float | None = None,
    on_done: Callable[[], None] | None = None,
) -> list[Answer]:
    """Call every available drive at once; return once all answered, or ``grace``
    seconds after ``need`` of them succeeded, or as soon as ``need`` is out of reach,
    or after ``deadline`` seconds. Calls still running go on in the background (a
    write still lands on a slow drive); ``on_done`` runs when the last one ended."""
    results: list[tuple[bool, Any] | None] = [None] * len(drives)
    cond = threading.Condition()
    usable = [i for i, d in enumerate(drives) if d.available()]
    running = [len(usable)]
    for i, drive in enumerate(drives):
        if i not in usable:
            results[i] = (False, DriveOffline(drive.name))

    def run(i: int, drive: Drive) -> None:
        try:
            outcome: tuple[bool, Any] = (True, call(drive))
        except Exception as exc:
            outcome = (False, exc)
        with cond:
            results[i] = outcome
            running[0] -= 1
            last = running[0] == 0
            cond.notify_all()
        if last and on_done is not None:
            on_done()

    if not usable and on_done is not None:
        on_done()
    for i in usable:
        threading.Thread(target=run, args=(i, drives[i]), daemon=True).start()

    started = time.monotonic()
    quorum_at: float | None = None
    with cond:
        while True:
            done = [r for r in results if r is not None]
            oks = sum(1 for ok, _ in done if ok)
            outstanding = len(drives) - len(done)
            if outstanding == 0 or oks + outstanding < need:
                break
            now = time.monotonic()
            wait: float | None = None
            if oks >= need:
                quorum_at = quorum_at or now
                wait = quorum_at + grace - now
                if wait <= 0:
                    break
            if deadline is not None:
                left = started + deadline - now
                if left <= 0:
                    break
                wait = left if wait is None else min(wait, left)
            cond.wait(wait)
        snapshot = list(results)
    return [
        Answer(d, r[0], r[1]) if r else Answer(d, False, TimeoutError(d.name))
        for d, r in zip(drives, snapshot, strict=True)
    ]


# --------------------------------------------------------------------------- the cluster


def _forget(drive: Drive, kind: str, bucket: str, ident: str, stamp: str) -> bool:
    return drive.forget(kind, bucket, ident, stamp)


Undo = Callable[[Drive, Any], None]


def undo_for(kind: str, bucket: str, ident: str, stamp: str) -> Undo:
    """How to take back one stored record (``put_*`` answered {"stored", "prev"})."""

    def undo(drive: Drive, result: Record) -> None:
        if result.get("stored"):
            drive.revert(kind, bucket, ident, stamp, result.get("prev"))

    return undo


class Ledger:
    """The drives that stored a write. When the write fails its quorum, each of them
    (and any that still stores it later) is told to take it back, as MinIO undoes a
    rename that missed quorum: a write answered with 503 must not be read."""

    def __init__(self, undo: Undo) -> None:
        self.undo = undo
        self.lock = threading.Lock()
        self.failed = False
        self.stored: list[tuple[Drive, Any]] = []

    def add(self, drive: Drive, result: Any) -> None:
        with self.lock:
            if not self.failed:
                self.stored.append((drive, result))
                return
        self._undo(drive, result)

    def fail(self) -> None:
        with self.lock:
            self.failed = True
            stored, self.stored = self.stored, []
        results = {id(d): r for d, r in stored}
        drives = [d for d, _ in stored]
        fan_out(
            drives, lambda d: self._undo(d, results[id(d)]), len(drives), deadline=META_DEADLINE
        )

    def _undo(self, drive: Drive, result: Any) -> None:
        try:
            self.undo(drive, result)
        except Exception as exc:
            log(f"could not take back a failed write on {drive.name}: {exc!r}")


class Cluster:
    """The drives of one erasure set, with quorum reads and writes, and healing."""

    def __init__(self, drives: list[Drive], quorum: Quorum) -> None:
        self.drives = drives
        self.quorum = quorum
        self.local = [d for d in drives if isinstance(d, LocalDrive)]
        self.peers = list({d.peer: None for d in drives if isinstance(d, RemoteDrive)})
        self.tmp = self.local[0].tmp
        self.heal_keys: set[tuple[str, str]] = set()
        self.heal_wanted = threading.Event()
        self.full_heal = True
        self.lock = threading.Lock()
        for peer in self.peers:
            peer.on_online = self.request_full_heal

    # -- health

    def drives_up(self) -> int:
        return sum(1 for d in self.drives if isinstance(d, LocalDrive) or d.peer.state == "online")

    def health(self, path: str) -> tuple[str, list[tuple[str, str]]]:
        path = path.rstrip("/")
        headers = [("X-Minio-Write-Quorum", str(self.quorum.write))]
        if path == "/minio/health/cluster":
            ok = self.quorum.can_write(self.drives_up())
        elif path == "/minio/health/cluster/read":
            ok = self.quorum.can_read(self.drives_up())
        else:
            ok = True
        return ("200 OK" if ok else "503 Service Unavailable"), headers

    # -- quorum primitives

    def read(self, call: Callable[[Drive], Any]) -> list[Answer]:
        answers = fan_out(self.drives, call, self.quorum.read, deadline=META_DEADLINE)
        oks = [a for a in answers if a.ok]
        if len(oks) < self.quorum.read:
            raise read_quorum_error()
        return oks

    def write(
        self,
        call: Callable[[Drive], Any],
        undo: Undo | None,
        on_done: Callable[[], None] | None = None,
        need: int | None = None,
    ) -> list[Answer]:
        """Store on every drive; write quorum or 503, and then nothing of it stays."""
        need = self.quorum.write if need is None else need
        self.check_writable(need, on_done)
        ledger = Ledger(undo) if undo is not None else None

        def recorded(drive: Drive) -> Any:
            result = call(drive)
            if ledger is not None:
                ledger.add(drive, result)
            return result

        answers = fan_out(self.drives, recorded, need, on_done=on_done)
        oks = [a for a in answers if a.ok]
        if len(oks) < need:
            if ledger is not None:
                ledger.fail()
            failed = ", ".join(f"{a.drive.name}: {a.value!r}" for a in answers if not a.ok)
            log(f"write quorum not met ({len(oks)} of {need}): {failed}")
            raise write_quorum_error()
        return oks

    def check_writable(self, need: int, on_done: Callable[[], None] | None = None) -> None:
        """Refuse at once when fewer drives than quorum are believed up (as MinIO)."""
        if sum(1 for d in self.drives if d.available()) < need:
            if on_done is not None:
                on_done()
            raise write_quorum_error()

    # -- buckets

    def bucket(self, name: str) -> Record | None:
        """The live bucket record (newest among read quorum), or None."""
        return live_bucket(newest(a.value for a in self.read(lambda d: d.bucket(name))))

    def require_bucket(self, name: str) -> Record:
        rec = self.bucket(name)
        if rec is None:
            raise S3Error("NoSuchBucket", "The specified bucket does not exist", 404)
        return rec

    def bucket_policy(self, name: str) -> str | None:
        rec = self.bucket(name)
        return rec.get("policy") if rec else None

    def buckets(self) -> list[Record]:
        merged: dict[str, Record] = {}
        for answer in self.read(lambda d: d.list_buckets()):
            for rec in answer.value:
                if rec["name"] not in merged or rec["stamp"] > merged[rec["name"]]["stamp"]:
                    merged[rec["name"]] = rec
        return sorted((r for r in merged.values() if not r.get("deleted")), key=lambda r: r["name"])

    # -- objects

    def object(self, bucket: str, key: str) -> tuple[Record | None, list[Drive]]:
        """(newest live record or None, drives holding it, local ones first)."""
        answers = self.read(lambda d: d.stat(bucket, key))
        brec = live_bucket(newest(a.value["bucket"] for a in answers))
        if brec is None:
            raise S3Error("NoSuchBucket", "The specified bucket does not exist", 404)
        current = [
            a for a in answers if a.value["object"] and a.value["object"]["stamp"] > brec["created"]
        ]
        rec = newest(a.value["object"] for a in current)
        if rec is None:
            return None, []
        holders = [a.drive for a in current if a.value["object"]["stamp"] == rec["stamp"]]
        if len(holders) < len(answers):
            self.schedule_heal(bucket, key)
        holders.sort(key=lambda d: not d.local)
        return (None if rec.get("deleted") else rec), holders

    def open_object(
        self, bucket: str, rec: Record, holders: list[Drive], offset: int, length: int
    ) -> BinaryIO:
        for drive in holders:
            try:
                return drive.open_data(bucket, rec["key"], rec["stamp"], offset, length)
            except (NotFound, DriveOffline, DriveError, OSError):
                continue
        raise read_quorum_error()

    def stage_object(
        self, bucket: str, rec: Record, holders: list[Drive], offset: int = 0, length: int = -1
    ) -> Source:
        """A private copy (in tmp/) of an object's bytes, e.g. for a copy or a transfer."""
        length = rec["size"] - offset if length < 0 else length
        for drive in holders:
            try:
                stream = drive.open_data(bucket, rec["key"], rec["stamp"], offset, length)
                return self.stage_stream(stream, length)
            except (NotFound, DriveOffline, DriveError, OSError):
                continue
        raise read_quorum_error()

    def stage_stream(self, stream: BinaryIO, length: int) -> Source:
        path = self.tmp / f"stage-{uuid.uuid4().hex}"
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            with stream, open(path, "wb") as out:
                copied = copy_stream(stream, out, length, [md5])
                _fsync_file(out)
            if copied != length:
                raise DriveError(f"short read: {copied} of {length} bytes")
            return Source(path, length, owned=True, md5=md5.hexdigest())
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise

    def store(self, bucket: str, rec: Record, source: Source | None) -> None:
        """Write an object version (or a delete marker) with write quorum."""
        on_done = source.close if source is not None else None
        undo = undo_for("object", bucket, rec["key"], rec["stamp"])
        self.write(lambda d: d.put_object(bucket, rec, source), undo, on_done=on_done)

    def store_bucket(self, rec: Record) -> None:
        undo = undo_for("bucket", rec["name"], rec["name"], rec["stamp"])
        self.write(lambda d: d.put_bucket(rec), undo)

    def store_upload(self, bucket: str, rec: Record, need: int | None = None) -> None:
        undo = undo_for("upload", bucket, rec["id"], rec["stamp"])
        self.write(lambda d: d.put_upload(bucket, rec), undo, need=need)

    def store_derived(
        self,
        bucket: str,
        rec: Record,
        derive: Callable[[Drive], Record],
        whole: Callable[[], Source],
    ) -> None:
        """Store a version each drive can make from what it holds (a completed upload
        from its parts, a copy from its source): drives that cannot (``assembled``
        False) get the whole object from here. Write quorum or 503 (and taken back)."""
        need = self.quorum.write
        self.check_writable(need)
        ledger = Ledger(undo_for("object", bucket, rec["key"], rec["stamp"]))
        source: Source | None = None

        def make(drive: Drive) -> Record:
            result = derive(drive)
            if result.get("assembled"):
                ledger.add(drive, result)
            return result

        def send(drive: Drive) -> Record:
            result = drive.put_object(bucket, rec, source)
            ledger.add(drive, result)
            return result

        answers = fan_out(self.drives, make, need)
        made = [a.drive for a in answers if a.ok and a.value.get("assembled")]
        missing = [a.drive for a in answers if a.ok and not a.value.get("assembled")]
        missing += [a.drive for a in answers if not a.ok and isinstance(a.value, DriveError)]
        stored = len(made)
        if missing:
            local = [d for d in made if isinstance(d, LocalDrive)]
            try:
                if local:
                    files = local[0].object_files(bucket, rec["key"], rec["stamp"])
                    source = Source(files, rec["size"], False)
                elif made:
                    source = self.stage_object(bucket, rec, made)
                else:
                    source = whole()
            except (OSError, S3Error, DriveError) as exc:
                log(f"{bucket}/{rec['key']}: no whole copy to send ({exc})")
        if source is not None:
            sent = fan_out(missing, send, max(0, need - stored), on_done=source.close)
            stored += sum(1 for a in sent if a.ok)
        if stored < need:
            ledger.fail()
            log(f"{bucket}/{rec['key']}: stored on {stored} drives, quorum not met")
            raise write_quorum_error()

    def listing(
        self, bucket: str, prefix: str, start: str = "", window: int = 1000
    ) -> Iterator[Record]:
        """Live object records under a prefix after ``start``, newest version of each, in
        key order. Drives answer ``window`` records at a time; a window of merged answers
        is complete up to the smallest last key of the drives that had more."""
        while True:
            answers = self.read(lambda d, s=start: d.list_objects(bucket, prefix, s, window))
            brec = live_bucket(newest(a.value["bucket"] for a in answers))
            if brec is None:
                raise S3Error("NoSuchBucket", "The specified bucket does not exist", 404)
            ends = [a.value["objects"] for a in answers if a.value["truncated"]]
            bound = min((max(r["key"] for r in objs) for objs in ends if objs), default=None)
            merged: dict[str, Record] = {}
            seen: dict[str, int] = {}
            for answer in answers:
                for rec in answer.value["objects"]:
                    key = rec["key"]
                    if rec["stamp"] <= brec["created"] or (bound is not None and key > bound):
                        continue
                    if key not in merged or rec["stamp"] > merged[key]["stamp"]:
                        merged[key], seen[key] = rec, 1
                    elif rec["stamp"] == merged[key]["stamp"]:
                        seen[key] += 1
            for key, count in seen.items():
                if count < len(answers) and not merged[key].get("deleted"):
                    self.schedule_heal(bucket, key)
            yield from sorted(
                (r for r in merged.values() if not r.get("deleted")), key=lambda r: r["key"]
            )
            if bound is None:
                return
            start = bound

    # -- multipart

    def upload_state(
        self, bucket: str, upload_id: str, key: str
    ) -> tuple[Record, dict[int, Record], dict[int, list[Drive]]]:
        """(upload, newest part records by number, drives holding each) or NoSuchUpload."""
        answers = self.read(lambda d: d.upload(bucket, upload_id))
        brec = live_bucket(newest(a.value["bucket"] for a in answers))
        if brec is None:
            raise S3Error("NoSuchBucket", "The specified bucket does not exist", 404)
        upload = newest(a.value["upload"] for a in answers)
        if (
            upload is None
            or upload["state"] != "open"
            or upload["key"] != key
            or upload["stamp"] <= brec["created"]
        ):
            raise S3Error(
                "NoSuchUpload",
                "The specified multipart upload does not exist. The upload ID may be invalid, "
                "or the upload may have been aborted or completed.",
                404,
            )
        parts: dict[int, Record] = {}
        holders: dict[int, list[Drive]] = {}
        for answer in answers:
            for rec in answer.value["parts"]:
                number = rec["number"]
                if number not in parts or rec["stamp"] > parts[number]["stamp"]:
                    parts[number], holders[number] = rec, [answer.drive]
                elif rec["stamp"] == parts[number]["stamp"]:
                    holders[number].append(answer.drive)
        for drives in holders.values():
            drives.sort(key=lambda d: not d.local)
        return upload, parts, holders

    def assemble_parts(
        self,
        bucket: str,
        upload_id: str,
        parts: list[Record],
        holders: dict[int, list[Drive]],
        size: int,
    ) -> Source:
        """The whole object at this instance, each part read from a drive that has it."""
        path = self.tmp / f"stage-{uuid.uuid4().hex}"
        try:
            with open(path, "wb") as out:
                for part in parts:
                    for drive in holders[part["number"]]:
                        start = out.tell()
                        try:
                            with drive.open_part(
                                bucket, upload_id, part["number"], part["stamp"]
                            ) as stream:
                                if copy_stream(stream, out, part["size"]) == part["size"]:
                                    break
                        except (NotFound, DriveOffline, DriveError, OSError):
                            pass
                        out.seek(start)
                        out.truncate()
                    else:
                        raise write_quorum_error()
                _fsync_file(out)
            return Source(path, size, owned=True)
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise

    # -- healing

    def schedule_heal(self, bucket: str, key: str) -> None:
        with self.lock:
            if len(self.heal_keys) < 10000:
                self.heal_keys.add((bucket, key))
        self.heal_wanted.set()

    def request_full_heal(self) -> None:
        self.full_heal = True
        self.heal_wanted.set()

    def transfer(self, bucket: str, rec: Record, holders: list[Drive], target: Drive) -> bool:
        """Give ``target`` the version ``rec`` of an object, read from one of ``holders``."""
        if rec.get("deleted"):
            target.put_object(bucket, rec, None)
            return True
        for holder in holders:
            try:
                if isinstance(holder, LocalDrive):
                    files = holder.object_files(bucket, rec["key"], rec["stamp"])
                    source = Source(files, rec["size"], False)
                else:
                    source = self.stage_stream(
                        holder.open_data(bucket, rec["key"], rec["stamp"]), rec["size"]
                    )
            except (NotFound, DriveOffline, DriveError, OSError, S3Error):
                continue
            try:
                target.put_object(bucket, rec, source)
                return True
            finally:
                source.close()
        return False

    def heal_key(self, bucket: str, key: str) -> int:
        answers = self.read(lambda d: d.stat(bucket, key))
        rec = newest(a.value["object"] for a in answers)
        if rec is None:
            return 0
        holders = [
            a.drive for a in answers if (a.value["object"] or {}).get("stamp") == rec["stamp"]
        ]
        holders.sort(key=lambda d: not d.local)
        healed = 0
        for answer in answers:
            if answer.drive not in holders:
                with contextlib.suppress(NotFound, DriveOffline, DriveError, OSError):
                    healed += self.transfer(bucket, rec, holders, answer.drive)
        return healed

    def heal_drive(self, drive: LocalDrive) -> tuple[int, int]:
        """Copy to a local drive every bucket, object version and upload it lacks; drop
        delete markers and finished uploads that every drive has held for a while."""
        healed_buckets = healed_objects = 0
        n = len(self.drives)
        cutoff = f"{time.time_ns() - int(TOMBSTONE_TTL * 1e9):019d}"
        merged: dict[str, Record] = {}
        for answer in self.read(lambda d: d.list_buckets()):
            for rec in answer.value:
                if rec["name"] not in merged or rec["stamp"] > merged[rec["name"]]["stamp"]:
                    merged[rec["name"]] = rec
        for name, rec in sorted(merged.items()):
            healed_buckets += drive.put_bucket(rec)["stored"]
            if rec.get("deleted"):
                continue
            answers = self.read(lambda d, name=name: d.list_objects(name, ""))
            latest: dict[str, Record] = {}
            holders: dict[str, list[Drive]] = {}
            for answer in answers:
                for obj in answer.value["objects"]:
                    key = obj["key"]
                    if obj["stamp"] <= rec["created"]:
                        continue
                    if key not in latest or obj["stamp"] > latest[key]["stamp"]:
                        latest[key], holders[key] = obj, [answer.drive]
                    elif obj["stamp"] == latest[key]["stamp"]:
                        holders[key].append(answer.drive)
            mine = drive.list_objects(name, "")["objects"]
            have = {obj["key"]: obj["stamp"] for obj in mine}
            for key, obj in latest.items():
                if have.get(key, "") < obj["stamp"]:
                    sources = [d for d in holders[key] if d is not drive]
                    sources.sort(key=lambda d: not d.local)
                    healed_objects += self.transfer(name, obj, sources, drive)
                elif obj.get("deleted") and obj["stamp"] < cutoff and len(holders[key]) == n:
                    # Every drive holds this delete marker: none has an older version to
                    # bring back, so the marker can go.
                    forget = partial(
                        _forget, kind="object", bucket=name, ident=key, stamp=obj["stamp"]
                    )
                    fan_out(self.drives, forget, 1)
            uploads: dict[str, Record] = {}
            alike: dict[str, int] = {}
            answers = self.read(lambda d, name=name: d.list_uploads(name, ""))
            for answer in answers:
                for up in answer.value["uploads"]:
                    if up["id"] not in uploads or up["stamp"] > uploads[up["id"]]["stamp"]:
                        uploads[up["id"]], alike[up["id"]] = up, 1
                    elif up["stamp"] == uploads[up["id"]]["stamp"]:
                        alike[up["id"]] += 1
            for up in uploads.values():
                drive.put_upload(name, up)  # the record only: parts are not healed
                if up["state"] != "open" and up["stamp"] < cutoff and alike[up["id"]] == n:
                    forget = partial(
                        _forget, kind="upload", bucket=name, ident=up["id"], stamp=up["stamp"]
                    )
                    fan_out(self.drives, forget, 1)
        return healed_buckets, healed_objects

    def healer(self) -> None:
        next_full = time.monotonic()
        while True:
            self.heal_wanted.wait(max(0.0, next_full - time.monotonic()))
            self.heal_wanted.clear()
            with self.lock:
                keys, self.heal_keys = self.heal_keys, set()
            healed = 0
            for bucket, key in sorted(keys):
                try:
                    healed += self.heal_key(bucket, key)
                except (S3Error, OSError, DriveError) as exc:
                    log(f"heal of {bucket}/{key} postponed: {exc}")
            if healed:
                log(f"heal: {healed} object copies repaired after reads")
            if self.full_heal or time.monotonic() >= next_full:
                self.full_heal = False
                next_full = time.monotonic() + HEAL_INTERVAL
                try:
                    for drive in self.local:
                        started = time.monotonic()
                        buckets, objects = self.heal_drive(drive)
                        if buckets or objects:
                            log(
                                f"heal: drive {drive.name} got {buckets} bucket records and "
                                f"{objects} object versions in {time.monotonic() - started:.1f}s"
                            )
                except S3Error:
                    next_full = time.monotonic() + 5  # no read quorum yet: try again soon
                except (OSError, DriveError) as exc:
                    log(f"heal failed: {exc}")
                    next_full = time.monotonic() + 5

    def prober(self, peer: Peer) -> None:
        last = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last > PROBE_INTERVAL + META_TIMEOUT + 5:
                log(
                    f"this instance stood still for {now - last:.0f}s (frozen?): healing its drives"
                )
                self.request_full_heal()
            last = now
            peer.probe()
            time.sleep(max(0.0, PROBE_INTERVAL - (time.monotonic() - now)))

    def start(self) -> None:
        for peer in self.peers:
            threading.Thread(target=self.prober, args=(peer,), daemon=True).start()
        threading.Thread(target=self.healer, daemon=True).start()


# --------------------------------------------------------------------------- S3 API

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_STORED_HEADERS = (
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)
_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
_IGNORED_PARAMS = frozenset({"x-id", "versionId"} | set(_RESPONSE_OVERRIDES))


def _x(text: Any) -> str:
    return _xml_escape(str(text))


def _owner() -> str:
    return f"<Owner><ID>{OWNER_ID}</ID><DisplayName>minio</DisplayName></Owner>"


def request_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    if "standin.headers" in environ:
        return list(environ["standin.headers"])
    found = []
    for name, value in environ.items():
        if name.startswith("HTTP_"):
            found.append((name[5:].replace("_", "-").lower(), value))
    if environ.get("CONTENT_TYPE"):
        found.append(("content-type", environ["CONTENT_TYPE"]))
    return found


def metadata_from(environ: dict[str, Any]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for name, value in request_headers(environ):
        lower = name.lower()
        if lower.startswith("x-amz-meta-") or lower in _STORED_HEADERS:
            if lower == "content-encoding":
                value = ",".join(v for v in value.split(",") if v.strip() != "aws-chunked")
                if not value:
                    continue
            meta[lower] = value
    meta.setdefault("content-type", "application/octet-stream")
    return meta


def _read_small_body(environ: dict[str, Any], limit: int = 4 * 1024 * 1024) -> bytes:
    stream = environ["wsgi.input"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if environ.get("wsgi.input_terminated"):
        data = stream.read(limit + 1)
    else:
        data = stream.read(min(length, limit + 1)) if length else b""
    if len(data) > limit:
        raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.")
    return data


def _parse_xml(data: bytes) -> ET.Element:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise S3Error(
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our "
            "published schema.",
        ) from exc
    for element in root.iter():
        element.tag = element.tag.rsplit("}", 1)[-1]
    return root


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(offset, length) of a single ``bytes=`` range, None to send everything."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header or "")
    if not match or not (match.group(1) or match.group(2)):
        return None
    first, last = match.groups()
    if first:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
        if start >= size or (last and int(last) < start):
            raise S3Error("InvalidRange", "The requested range is not satisfiable", 416)
    else:
        suffix = int(last)
        if suffix == 0:
            raise S3Error("InvalidRange", "The requested range is not satisfiable", 416)
        start, end = max(0, size - suffix), size - 1
    return start, end - start + 1


def paginate(
    records: list[Record], prefix: str, delimiter: str, start: str, max_keys: int
) -> tuple[list[Record], list[str], bool, str]:
    """S3 listing over sorted records: (contents, common prefixes, truncated, next marker)."""
    contents: list[Record] = []
    prefixes: list[str] = []
    count, truncated, marker, last_prefix = 0, False, "", None
    for rec in records:
        key = rec["key"]
        if start and key <= start:
            continue
        if delimiter:
            cut = key.find(delimiter, len(prefix))
            if cut >= 0:
                common = key[: cut + len(delimiter)]
                if common == last_prefix or (start and common <= start):
                    continue
                if count >= max_keys:
                    truncated = True
                    break
                prefixes.append(common)
                last_prefix = marker = common
                count += 1
                continue
        if count >= max_keys:
            truncated = True
            break
        contents.append(rec)
        marker = key
        count += 1
    return contents, prefixes, truncated, marker


def _max_keys(query: dict[str, str], name: str) -> int:
    try:
        value = int(query.get(name, 1000))
    except ValueError as exc:
        raise S3Error("InvalidArgument", f"{name} must be an integer") from exc
    if value < 0:
        raise S3Error("InvalidArgument", f"{name} must not be negative")
    return min(value, 1000)


def _copy_source(environ: dict[str, Any]) -> tuple[str, str]:
    raw = unquote(environ.get("HTTP_X_AMZ_COPY_SOURCE", "")).split("?", 1)[0].lstrip("/")
    bucket, _, key = raw.partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and key")
    return bucket, key


class S3Api:
    """The S3 requests, answered through the cluster's quorum reads and writes."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            return self.route(environ, start_response)
        except S3Error as err:
            return s3_error(start_response, environ, err.code, err.message, err.status)

    # -- responses

    @staticmethod
    def xml(
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        body: str,
        status: str = "200 OK",
        headers: Iterable[tuple[str, str]] = (),
    ) -> list[bytes]:
        data = ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()
        start_response(
            status,
            [("Content-Type", "application/xml"), ("Content-Length", str(len(data))), *headers],
        )
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [data]

    @staticmethod
    def empty(
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        status: str = "200 OK",
        headers: Iterable[tuple[str, str]] = (),
    ) -> list[bytes]:
        _drain_body(environ)
        start_response(status, [("Content-Length", "0"), *headers])
        return []

    # -- routing

    def route(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "surrogateescape")
        bucket, _, key = path.lstrip("/").partition("/")
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        sub = {k for k in query if k not in _IGNORED_PARAMS and not k.startswith("X-Amz-")}
        sub -= {"AWSAccessKeyId", "Signature", "Expires"}
        args = (environ, start_response, query)
        if not bucket:
            if method in ("GET", "HEAD"):
                return self.list_buckets(*args)
            raise S3Error("MethodNotAllowed", "The specified method is not allowed.", 405)
        if not key:
            return self.route_bucket(method, bucket, sub, *args)
        return self.route_object(method, bucket, key, sub, *args)

    def route_bucket(self, method: str, bucket: str, sub: set[str], *args: Any) -> Any:
        environ, start_response, query = args
        if method == "PUT" and not sub:
            return self.create_bucket(bucket, *args)
        if method == "PUT" and sub == {"policy"}:
            return self.put_policy(bucket, *args)
        if method in ("GET", "HEAD") and sub == {"policy"}:
            return self.get_policy(bucket, *args)
        if method == "DELETE" and sub == {"policy"}:
            return self.delete_policy(bucket, *args)
        if method == "DELETE" and not sub:
            return self.delete_bucket(bucket, *args)
        if method == "HEAD" and not sub:
            self.cluster.require_bucket(bucket)
            return self.empty(environ, start_response)
        if method == "GET" and sub <= LISTING_PARAMS:
            if query.get("list-type") == "2":
                return self.list_objects_v2(bucket, *args)
            return self.list_objects_v1(bucket, *args)
        if method == "GET" and "uploads" in sub:
            return self.list_uploads(bucket, *args)
        if method == "GET" and sub == {"location"}:
            self.cluster.require_bucket(bucket)
            return self.xml(environ, start_response, f'<LocationConstraint xmlns="{S3_NS}"/>')
        if method == "GET" and sub == {"versioning"}:
            self.cluster.require_bucket(bucket)
            return self.xml(environ, start_response, f'<VersioningConfiguration xmlns="{S3_NS}"/>')
        if method == "GET" and sub == {"acl"}:
            self.cluster.require_bucket(bucket)
            return self.acl(*args)
        if method == "POST" and "delete" in sub:
            return self.delete_objects(bucket, *args)
        raise S3Error(
            "NotImplemented",
            "A header you provided implies functionality that is not implemented",
            501,
        )

    def route_object(self, method: str, bucket: str, key: str, sub: set[str], *args: Any) -> Any:
        environ, start_response, query = args
        copy = bool(environ.get("HTTP_X_AMZ_COPY_SOURCE"))
        if method == "PUT" and sub == {"partNumber", "uploadId"}:
            return self.upload_part(bucket, key, copy, *args)
        if method == "PUT" and not sub:
            return (
                self.copy_object(bucket, key, *args)
                if copy
                else self.put_object(bucket, key, *args)
            )
        if method in ("GET", "HEAD") and not sub:
            return self.get_object(bucket, key, *args)
        if method == "GET" and sub == {"uploadId"}:
            return self.list_parts(bucket, key, *args)
        if method == "GET" and sub == {"acl"}:
            if self.cluster.object(bucket, key)[0] is None:
                raise S3Error("NoSuchKey", "The specified key does not exist.", 404)
            return self.acl(*args)
        if method == "POST" and sub == {"uploads"}:
            return self.create_upload(bucket, key, *args)
        if method == "POST" and sub == {"uploadId"}:
            return self.complete_upload(bucket, key, *args)
        if method == "DELETE" and sub == {"uploadId"}:
            return self.abort_upload(bucket, key, *args)
        if method == "DELETE" and not sub:
            self.cluster.require_bucket(bucket)
            self.cluster.store(bucket, {"key": key, "stamp": new_stamp(), "deleted": True}, None)
            return self.empty(environ, start_response, "204 No Content")
        raise S3Error(
            "NotImplemented",
            "A header you provided implies functionality that is not implemented",
            501,
        )

    # -- buckets

    def list_buckets(self, environ: dict[str, Any], start_response: Any, query: Any) -> Any:
        entries = "".join(
            f"<Bucket><Name>{_x(r['name'])}</Name>"
            f"<CreationDate>{_iso(r['created'])}</CreationDate></Bucket>"
            for r in self.cluster.buckets()
        )
        body = (
            f'<ListAllMyBucketsResult xmlns="{S3_NS}">{_owner()}'
            f"<Buckets>{entries}</Buckets></ListAllMyBucketsResult>"
        )
        return self.xml(environ, start_response, body)

    def create_bucket(self, bucket: str, environ: Any, start_response: Any, query: Any) -> Any:
        if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
            raise S3Error("InvalidBucketName", "The specified bucket is not valid.")
        _drain_body(environ)
        if self.cluster.bucket(bucket) is not None:
            raise S3Error(
                "BucketAlreadyOwnedByYou",
                "Your previous request to create the named bucket succeeded and you already "
                "own it.",
                409,
            )
        stamp = new_stamp()
        rec = {"name": bucket, "stamp": stamp, "created": stamp, "deleted": False, "policy": None}
        self.cluster.store_bucket(rec)
        return self.empty(environ, start_response, headers=[("Location", f"/{bucket}")])

    def delete_bucket(self, bucket: str, environ: Any, start_response: Any, query: Any) -> Any:
        rec = self.cluster.require_bucket(bucket)
        if next(self.cluster.listing(bucket, "", window=100), None) is not None:
            raise S3Error("BucketNotEmpty", "The bucket you tried to delete is not empty", 409)
        self.cluster.store_bucket({**rec, "stamp": new_stamp(), "deleted": True, "policy": None})
        return self.empty(environ, start_response, "204 No Content")

    def _update_bucket(self, bucket: str, **changes: Any) -> None:
        rec = self.cluster.require_bucket(bucket)
        self.cluster.store_bucket({**rec, **changes, "stamp": new_stamp()})

    def put_policy(self, bucket: str, environ: Any, start_response: Any, query: Any) -> Any:
        text = _read_small_body(environ, 20 * 1024).decode("utf-8", "replace")
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise S3Error("MalformedPolicy", "Policies must be valid JSON.") from exc
        if not isinstance(document, dict) or "Statement" not in document:
            raise S3Error("MalformedPolicy", "Policy has no Statement.")
        self._update_bucket(bucket, policy=text)
        return self.empty(environ, start_response, "204 No Content")

    def get_policy(self, bucket: str, environ: Any, start_response: Any, query: Any) -> Any:
        policy = self.cluster.require_bucket(bucket).get("policy")
        if not policy:
            raise S3Error("NoSuchBucketPolicy", "The bucket policy does not exist", 404)
        data = policy.encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [data]

    def delete_policy(self, bucket: str, environ: Any, start_response: Any, query: Any) -> Any:
        self._update_bucket(bucket, policy=None)
        return self.empty(environ, start_response, "204 No Content")

    def acl(self, environ: Any, start_response: Any, query: Any) -> Any:
        body = (
            f'<AccessControlPolicy xmlns="{S3_NS}">{_owner()}<AccessControlList><Grant>'
            '<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            f'xsi:type="CanonicalUser"><ID>{OWNER_ID}</ID><DisplayName>minio</DisplayName>'
            "</Grantee><Permission>FULL_CONTROL</Permission></Grant></AccessControlList>"
            "</AccessControlPolicy>"
        )
        return self.xml(environ, start_response, body)

    # -- listing

    def _listing_body(
        self, bucket: str, query: dict[str, str], start: str, v2: bool
    ) -> tuple[str, bool, str, int]:
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        max_keys = _max_keys(query, "max-keys")
        records = self.cluster.listing(bucket, prefix, start, min(1000, max(100, max_keys + 1)))
        contents, prefixes, truncated, marker = paginate(
            records, prefix, delimiter, start, max_keys
        )
        encode = (lambda s: quote(s, safe="/")) if query.get("encoding-type") == "url" else str
        owner = _owner() if (not v2 or query.get("fetch-owner") == "true") else ""
        parts = [
            f"<Contents><Key>{_x(encode(r['key']))}</Key>"
            f"<LastModified>{_iso(r['stamp'])}</LastModified>"
            f"<ETag>&quot;{r['etag']}&quot;</ETag><Size>{r['size']}</Size>{owner}"
            "<StorageClass>STANDARD</StorageClass></Contents>"
            for r in contents
        ]
        parts += [
            f"<CommonPrefixes><Prefix>{_x(encode(p))}</Prefix></CommonPrefixes>" for p in prefixes
        ]
        head = f"<Name>{_x(bucket)}</Name><Prefix>{_x(encode(prefix))}</Prefix>"
        head += f"<MaxKeys>{max_keys}</MaxKeys>"
        if delimiter:
            head += f"<Delimiter>{_x(encode(delimiter))}</Delimiter>"
        if query.get("encoding-type") == "url":
            head += "<EncodingType>url</EncodingType>"
        head += f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
        return head + "".join(parts), truncated, marker, len(contents) + len(prefixes)

    def list_objects_v1(self, bucket: str, environ: Any, start_response: Any, query: Any) -> Any:
        marker = query.get("marker", "")
        body, truncated, next_marker, _ = self._listing_body(bucket, query, marker, v2=False)
        encode = (lambda s: quote(s, safe="/")) if query.get("encoding-type") == "url" else str
        extra = f"<Marker>{_x(encode(marker))}</Marker>"
        if truncated:
            extra += f"<NextMarker>{_x(encode(next_marker))}</NextMarker>"
        return self.xml(
            environ,
            start_response,
            f'<ListBucketResult xmlns="{S3_NS}">{extra}{body}</ListBucketResult>',
        )

    def list_objects_v2(self, bucket: str, environ: Any, start_response: Any, query: Any) -> Any:
        token = query.get("continuation-token")
        start_after = query.get("start-after", "")
        start = start_after
        if token:
            try:
                start = base64.urlsafe_b64decode(token.encode()).decode()
            except ValueError as exc:
                raise S3Error(
                    "InvalidArgument", "The continuation token provided is incorrect"
                ) from exc
        body, truncated, next_marker, count = self._listing_body(bucket, query, start, v2=True)
        encode = (lambda s: quote(s, safe="/")) if query.get("encoding-type") == "url" else str
        extra = f"<KeyCount>{count}</KeyCount>"
        if start_after:
            extra += f"<StartAfter>{_x(encode(start_after))}</StartAfter>"
        if token:
            extra += f"<ContinuationToken>{_x(token)}</ContinuationToken>"
        if truncated:
            next_token = base64.urlsafe_b64encode(next_marker.encode()).decode()
            extra += f"<NextContinuationToken>{next_token}</NextContinuationToken>"
        return self.xml(
            environ,
            start_response,
            f'<ListBucketResult xmlns="{S3_NS}">{extra}{body}</ListBucketResult>',
        )

    # -- objects

    def put_object(
        self, bucket: str, key: str, environ: Any, start_response: Any, query: Any
    ) -> Any:
        self.cluster.require_bucket(bucket)
        source = stage_body(environ, self.cluster.tmp)
        rec = {
            "key": key,
            "stamp": new_stamp(),
            "size": source.size,
            "etag": source.md5,
            "meta": metadata_from(environ),
        }
        self.cluster.store(bucket, rec, source)  # closes the source when all drives are done
        return self.empty(environ, start_response, headers=[("ETag", f'"{rec["etag"]}"')])

    def copy_object(
        self, bucket: str, key: str, environ: Any, start_response: Any, query: Any
    ) -> Any:
        self.cluster.require_bucket(bucket)
        src_bucket, src_key = _copy_source(environ)
        src, holders = self.cluster.object(src_bucket, src_key)
        if src is None:
            raise S3Error("NoSuchKey", "The specified key does not exist.", 404)
        _drain_body(environ)
        replace = environ.get("HTTP_X_AMZ_METADATA_DIRECTIVE", "COPY").upper() == "REPLACE"
        rec = {
            "key": key,
            "stamp": new_stamp(),
            "size": src["size"],
            "etag": src["etag"],  # the same bytes (MinIO keeps the ETag too)
            "meta": metadata_from(environ) if replace else dict(src.get("meta", {})),
        }
        self.cluster.store_derived(
            bucket,
            rec,
            lambda d: d.copy_object(src_bucket, src_key, src["stamp"], bucket, rec),
            lambda: self.cluster.stage_object(src_bucket, src, holders),
        )
        body = (
            f'<CopyObjectResult xmlns="{S3_NS}"><LastModified>{_iso(rec["stamp"])}</LastModified>'
            f"<ETag>&quot;{rec['etag']}&quot;</ETag></CopyObjectResult>"
        )
        return self.xml(environ, start_response, body)

    def get_object(
        self, bucket: str, key: str, environ: Any, start_response: Any, query: dict[str, str]
    ) -> Any:
        rec, holders = self.cluster.object(bucket, key)
        if rec is None:
            raise S3Error("NoSuchKey", "The specified key does not exist.", 404)
        etag = f'"{rec["etag"]}"'
        headers = [
            ("ETag", etag),
            ("Last-Modified", _http_date(rec["stamp"])),
            ("Accept-Ranges", "bytes"),
        ]
        for name, value in rec.get("meta", {}).items():
            headers.append((name, value))
        overrides = {
            _RESPONSE_OVERRIDES[k]: v for k, v in query.items() if k in _RESPONSE_OVERRIDES
        }
        headers = [(n, v) for n, v in headers if n.lower() not in {o.lower() for o in overrides}]
        headers += list(overrides.items())
        if_match = environ.get("HTTP_IF_MATCH")
        if if_match and etag not in (v.strip() for v in if_match.split(",")) and if_match != "*":
            raise S3Error(
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                412,
            )
        if_none = environ.get("HTTP_IF_NONE_MATCH")
        if if_none and (if_none.strip() == "*" or etag in (v.strip() for v in if_none.split(","))):
            start_response("304 Not Modified", [("Content-Length", "0"), *headers[:2]])
            return []
        size = rec["size"]
        offset, length, status = 0, size, "200 OK"
        wanted = parse_range(environ.get("HTTP_RANGE", ""), size) if size else None
        if wanted:
            offset, length = wanted
            status = "206 Partial Content"
            headers.append(("Content-Range", f"bytes {offset}-{offset + length - 1}/{size}"))
        headers.append(("Content-Length", str(length)))
        if environ["REQUEST_METHOD"] == "HEAD" or length == 0:
            start_response(status, headers)
            return []
        stream = self.cluster.open_object(bucket, rec, holders, offset, length)
        start_response(status, headers)
        return _iterate(stream, length)

    def delete_objects(self, bucket: str, environ: Any, start_response: Any, query: Any) -> Any:
        root = _parse_xml(_read_small_body(environ))
        quiet = (root.findtext("Quiet") or "").strip().lower() == "true"
        keys = [obj.findtext("Key") or "" for obj in root.findall("Object")]
        if len(keys) > 1000:
            raise S3Error("MalformedXML", "At most 1000 keys may be deleted at once.")
        self.cluster.require_bucket(bucket)
        tombstones = [{"key": k, "stamp": new_stamp(), "deleted": True} for k in keys if k]
        try:
            if tombstones:
                self.cluster.write(
                    lambda d: d.put_tombstones(bucket, tombstones),
                    self._undo_tombstones(bucket, tombstones),
                )
            failure = None
        except S3Error as err:
            failure = err
        entries = []
        for key in keys:
            if failure is not None:
                entries.append(
                    f"<Error><Key>{_x(key)}</Key><Code>{failure.code}</Code>"
                    f"<Message>{_x(failure.message)}</Message></Error>"
                )
            elif not quiet:
                entries.append(f"<Deleted><Key>{_x(key)}</Key></Deleted>")
        body = f'<DeleteResult xmlns="{S3_NS}">{"".join(entries)}</DeleteResult>'
        return self.xml(environ, start_response, body)

    @staticmethod
    def _undo_tombstones(bucket: str, tombstones: list[Record]) -> Undo:
        def undo(drive: Drive, results: list[Record]) -> None:
            for rec, result in zip(tombstones, results, strict=True):
                undo_for("object", bucket, rec["key"], rec["stamp"])(drive, result)

        return undo

    # -- multipart

    def create_upload(
        self, bucket: str, key: str, environ: Any, start_response: Any, query: Any
    ) -> Any:
        _drain_body(environ)
        self.cluster.require_bucket(bucket)
        stamp = new_stamp()
        rec = {
            "id": uuid.uuid4().hex,
            "key": key,
            "stamp": stamp,
            "initiated": stamp,
            "state": "open",
            "meta": metadata_from(environ),
        }
        self.cluster.store_upload(bucket, rec)
        body = (
            f'<InitiateMultipartUploadResult xmlns="{S3_NS}"><Bucket>{_x(bucket)}</Bucket>'
            f"<Key>{_x(key)}</Key><UploadId>{rec['id']}</UploadId></InitiateMultipartUploadResult>"
        )
        return self.xml(environ, start_response, body)

    def upload_part(
        self, bucket: str, key: str, copy: bool, environ: Any, start_response: Any, query: Any
    ) -> Any:
        try:
            number = int(query["partNumber"])
        except ValueError:
            number = 0
        if not 1 <= number <= MAX_PART_NUMBER:
            raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000")
        upload_id = query["uploadId"]
        self.cluster.upload_state(bucket, upload_id, key)
        if copy:
            src_bucket, src_key = _copy_source(environ)
            src, holders = self.cluster.object(src_bucket, src_key)
            if src is None:
                raise S3Error("NoSuchKey", "The specified key does not exist.", 404)
            _drain_body(environ)
            wanted = environ.get("HTTP_X_AMZ_COPY_SOURCE_RANGE", "")
            offset, length = parse_range(wanted, src["size"]) or (0, src["size"])
            source = self.cluster.stage_object(src_bucket, src, holders, offset, length)
        else:
            source = stage_body(environ, self.cluster.tmp)
        rec = {"number": number, "stamp": new_stamp(), "size": source.size, "etag": source.md5}
        self.cluster.write(
            lambda d: d.put_part(bucket, upload_id, rec, source),
            undo_for("part", bucket, f"{upload_id}/{number}", rec["stamp"]),
            on_done=source.close,
        )
        if copy:
            body = (
                f'<CopyPartResult xmlns="{S3_NS}"><LastModified>{_iso(rec["stamp"])}'
                f"</LastModified><ETag>&quot;{rec['etag']}&quot;</ETag></CopyPartResult>"
            )
            return self.xml(environ, start_response, body)
        return self.empty(environ, start_response, headers=[("ETag", f'"{rec["etag"]}"')])

    def list_parts(
        self, bucket: str, key: str, environ: Any, start_response: Any, query: dict[str, str]
    ) -> Any:
        upload_id = query["uploadId"]
        upload, parts, _ = self.cluster.upload_state(bucket, upload_id, key)
        max_parts = _max_keys(query, "max-parts")
        try:
            after = int(query.get("part-number-marker") or 0)
        except ValueError:
            after = 0
        numbers = [n for n in sorted(parts) if n > after]
        shown, truncated = numbers[:max_parts], len(numbers) > max_parts
        entries = "".join(
            f"<Part><PartNumber>{n}</PartNumber><LastModified>{_iso(parts[n]['stamp'])}"
            f"</LastModified><ETag>&quot;{parts[n]['etag']}&quot;</ETag>"
            f"<Size>{parts[n]['size']}</Size></Part>"
            for n in shown
        )
        body = (
            f'<ListPartsResult xmlns="{S3_NS}"><Bucket>{_x(bucket)}</Bucket><Key>{_x(key)}</Key>'
            f"<UploadId>{upload_id}</UploadId>"
            f"<Initiator><ID>{OWNER_ID}</ID><DisplayName>minio</DisplayName></Initiator>"
            f"{_owner()}<StorageClass>STANDARD</StorageClass>"
            f"<PartNumberMarker>{after}</PartNumberMarker>"
            f"<NextPartNumberMarker>{shown[-1] if shown else 0}</NextPartNumberMarker>"
            f"<MaxParts>{max_parts}</MaxParts>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{entries}"
            "</ListPartsResult>"
        )
        return self.xml(environ, start_response, body)

    def complete_upload(
        self, bucket: str, key: str, environ: Any, start_response: Any, query: dict[str, str]
    ) -> Any:
        upload_id = query["uploadId"]
        root = _parse_xml(_read_small_body(environ))
        wanted = []
        for part in root.findall("Part"):
            try:
                number = int(part.findtext("PartNumber") or "")
            except ValueError as exc:
                raise S3Error("MalformedXML", "A part has no valid PartNumber.") from exc
            wanted.append((number, (part.findtext("ETag") or "").strip().strip('"')))
        if not wanted:
            raise S3Error("MalformedXML", "The XML you provided names no parts.")
        if [n for n, _ in wanted] != sorted({n for n, _ in wanted}):
            raise S3Error("InvalidPartOrder", "The list of parts was not in ascending order.")
        upload, parts, holders = self.cluster.upload_state(bucket, upload_id, key)
        chosen = []
        for number, etag in wanted:
            part = parts.get(number)
            if part is None or part["etag"] != etag:
                raise S3Error(
                    "InvalidPart",
                    "One or more of the specified parts could not be found. The part may not "
                    "have been uploaded, or the specified entity tag may not match the part's "
                    "entity tag.",
                )
            chosen.append(part)
        for part in chosen[:-1]:
            if part["size"] < MIN_PART_SIZE:
                raise S3Error(
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed object size.",
                )
        digest = hashlib.md5(
            b"".join(bytes.fromhex(p["etag"]) for p in chosen), usedforsecurity=False
        )
        rec = {
            "key": key,
            "stamp": new_stamp(),
            "size": sum(p["size"] for p in chosen),
            "etag": f"{digest.hexdigest()}-{len(chosen)}",
            "meta": dict(upload.get("meta", {})),
        }
        spec = [[p["number"], p["stamp"]] for p in chosen]
        self.cluster.store_derived(
            bucket,
            rec,
            lambda d: d.complete(bucket, upload_id, rec, spec),
            lambda: self.cluster.assemble_parts(bucket, upload_id, chosen, holders, rec["size"]),
        )
        done = {**upload, "stamp": new_stamp(), "state": "completed"}
        with contextlib.suppress(S3Error):
            self.cluster.store_upload(bucket, done, need=1)
        body = (
            f'<CompleteMultipartUploadResult xmlns="{S3_NS}">'
            f"<Location>/{_x(bucket)}/{_x(key)}</Location><Bucket>{_x(bucket)}</Bucket>"
            f"<Key>{_x(key)}</Key><ETag>&quot;{rec['etag']}&quot;</ETag>"
            "</CompleteMultipartUploadResult>"
        )
        return self.xml(environ, start_response, body)

    def abort_upload(
        self, bucket: str, key: str, environ: Any, start_response: Any, query: dict[str, str]
    ) -> Any:
        upload, _, _ = self.cluster.upload_state(bucket, query["uploadId"], key)
        self.cluster.store_upload(bucket, {**upload, "stamp": new_stamp(), "state": "aborted"})
        return self.empty(environ, start_response, "204 No Content")

    def list_uploads(
        self, bucket: str, environ: Any, start_response: Any, query: dict[str, str]
    ) -> Any:
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        key_marker, id_marker = query.get("key-marker", ""), query.get("upload-id-marker", "")
        max_uploads = _max_keys(query, "max-uploads")
        answers = self.cluster.read(lambda d: d.list_uploads(bucket, prefix))
        brec = live_bucket(newest(a.value["bucket"] for a in answers))
        if brec is None:
            raise S3Error("NoSuchBucket", "The specified bucket does not exist", 404)
        merged: dict[str, Record] = {}
        for answer in answers:
            for rec in answer.value["uploads"]:
                if rec["id"] not in merged or rec["stamp"] > merged[rec["id"]]["stamp"]:
                    merged[rec["id"]] = rec
        uploads = sorted(
            (r for r in merged.values() if r["state"] == "open" and r["stamp"] > brec["created"]),
            key=lambda r: (r["key"], r["initiated"], r["id"]),
        )
        if key_marker:
            uploads = [
                r
                for r in uploads
                if r["key"] > key_marker
                or (r["key"] == key_marker and id_marker and r["id"] > id_marker)
            ]
        entries, prefixes, truncated, last = [], [], False, None
        for rec in uploads:
            if delimiter:
                cut = rec["key"].find(delimiter, len(prefix))
                if cut >= 0:
                    common = rec["key"][: cut + len(delimiter)]
                    if common not in prefixes:
                        prefixes.append(common)
                    continue
            if len(entries) >= max_uploads:
                truncated = True
                break
            entries.append(rec)
            last = rec
        body = "".join(
            f"<Upload><Key>{_x(r['key'])}</Key><UploadId>{r['id']}</UploadId>"
            f"<Initiator><ID>{OWNER_ID}</ID><DisplayName>minio</DisplayName></Initiator>"
            f"{_owner()}<StorageClass>STANDARD</StorageClass>"
            f"<Initiated>{_iso(r['initiated'])}</Initiated></Upload>"
            for r in entries
        )
        body += "".join(
            f"<CommonPrefixes><Prefix>{_x(p)}</Prefix></CommonPrefixes>" for p in prefixes
        )
        head = (
            f"<Bucket>{_x(bucket)}</Bucket><KeyMarker>{_x(key_marker)}</KeyMarker>"
            f"<UploadIdMarker>{_x(id_marker)}</UploadIdMarker>"
            f"<NextKeyMarker>{_x(last['key']) if last else ''}</NextKeyMarker>"
            f"<NextUploadIdMarker>{last['id'] if last else ''}</NextUploadIdMarker>"
            f"<Prefix>{_x(prefix)}</Prefix>"
            + (f"<Delimiter>{_x(delimiter)}</Delimiter>" if delimiter else "")
            + f"<MaxUploads>{max_uploads}</MaxUploads>"
            f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
        )
        return self.xml(
            environ,
            start_response,
            f'<ListMultipartUploadsResult xmlns="{S3_NS}">{head}{body}'
            "</ListMultipartUploadsResult>",
        )


def _iterate(stream: BinaryIO, length: int) -> Iterator[bytes]:
    try:
        left = length
        while left > 0:
            chunk = stream.read(min(COPY_BLOCK, left))
            if not chunk:
                raise OSError(f"object data ended {left} bytes early")
            left -= len(chunk)
            yield chunk
    finally:
        stream.close()


# --------------------------------------------------------------------------- internal API


class InternalApi:
    """What peers call on this instance's drives (``/minio/standin/v1/OP?drive=PATH``)."""

    def __init__(self, cluster: Cluster, auth: PeerAuth) -> None:
        self.drives = {d.name: d for d in cluster.local}
        self.auth = auth

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = environ["REQUEST_METHOD"]
        target = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
        age = self.auth.age(method, target, environ.get("HTTP_X_STANDIN_AUTH", ""))
        if age is None:
            return s3_error(start_response, environ, "AccessDenied", "Access Denied.", 403)
        if method in ("PUT", "POST") and age > STALE_WRITE:
            message = f"a write call {age:.1f}s old: its caller gave up on it"
            return s3_error(start_response, environ, "XMinioStandinStaleCall", message, 409)
        op = environ.get("PATH_INFO", "")[len(INTERNAL_PREFIX) :]
        q = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        drive = self.drives.get(q.get("drive", ""))
        if drive is None:
            return s3_error(
                start_response, environ, "XMinioStandinNoSuchDrive", q.get("drive", ""), 404
            )
        try:
            return self.dispatch(drive, method, op, q, environ, start_response)
        except NotFound as exc:
            return s3_error(start_response, environ, "NoSuchVersion", str(exc), 404)

    @staticmethod
    def reply(start_response: Callable[..., Any], value: Any) -> list[bytes]:
        data = json.dumps(value).encode()
        start_response(
            "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
        )
        return [data]

    def receive(self, drive: LocalDrive, environ: dict[str, Any], size: int) -> Source:
        path = drive.tmp / f"recv-{uuid.uuid4().hex}"
        try:
            with open(path, "wb") as out:
                copied = copy_stream(environ["wsgi.input"], out, size)
                _fsync_file(out)
            if copied != size:
                raise DriveError(f"short body: {copied} of {size} bytes")
            return Source(path, size, owned=True)
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise

    def dispatch(
        self,
        drive: LocalDrive,
        method: str,
        op: str,
        q: dict[str, str],
        environ: dict[str, Any],
        start_response: Callable[..., Any],
    ) -> Any:
        bucket = q.get("bucket", "")
        reply = self.reply
        if (method, op) == ("GET", "stat"):
            return reply(start_response, drive.stat(bucket, q.get("key")))
        if (method, op) == ("GET", "buckets"):
            return reply(start_response, drive.list_buckets())
        if (method, op) == ("PUT", "bucket"):
            rec = json.loads(_read_small_body(environ))
            return reply(start_response, drive.put_bucket(rec))
        if (method, op) == ("GET", "objects"):
            found = drive.list_objects(
                bucket, q.get("prefix", ""), q.get("start", ""), int(q.get("limit") or 0)
            )
            return reply(start_response, found)
        if (method, op) == ("POST", "forget"):
            _drain_body(environ)
            forgotten = drive.forget(q["kind"], bucket, q["ident"], q["stamp"])
            return reply(start_response, {"forgotten": forgotten})
        if (method, op) == ("GET", "data"):
            length = int(q["length"]) if "length" in q else None
            stream = drive.open_data(bucket, q["key"], q["stamp"], int(q.get("offset", 0)), length)
            length = stream.length
            start_response(
                "200 OK",
                [("Content-Type", "application/octet-stream"), ("Content-Length", str(length))],
            )
            return _iterate(stream, length)
        if (method, op) in (("PUT", "object"), ("PUT", "part")):
            rec = _unb64json(environ.get("HTTP_X_STANDIN_RECORD", ""))
            if rec.get("deleted"):
                _drain_body(environ)
                return reply(start_response, drive.put_object(bucket, rec, None))
            source = self.receive(drive, environ, rec["size"])
            try:
                if op == "object":
                    stored = drive.put_object(bucket, rec, source)
                else:
                    stored = drive.put_part(bucket, q["upload"], rec, source)
            finally:
                source.close()
            return reply(start_response, stored)
        if (method, op) == ("POST", "tombstones"):
            records = json.loads(_read_small_body(environ, 64 * 1024 * 1024))
            return reply(start_response, {"results": drive.put_tombstones(bucket, records)})
        if (method, op) == ("GET", "uploads"):
            return reply(start_response, drive.list_uploads(bucket, q.get("prefix", "")))
        if (method, op) == ("GET", "upload"):
            return reply(start_response, drive.upload(bucket, q["upload"]))
        if (method, op) == ("PUT", "upload"):
            rec = json.loads(_read_small_body(environ))
            return reply(start_response, drive.put_upload(bucket, rec))
        if (method, op) == ("GET", "part"):
            stream = drive.open_part(bucket, q["upload"], int(q["number"]), q["stamp"])
            length = stream.length
            start_response(
                "200 OK",
                [("Content-Type", "application/octet-stream"), ("Content-Length", str(length))],
            )
            return _iterate(stream, length)
        if (method, op) == ("POST", "complete"):
            job = json.loads(_read_small_body(environ))
            return reply(
                start_response, drive.complete(bucket, q["upload"], job["record"], job["parts"])
            )
        if (method, op) == ("POST", "copy"):
            job = json.loads(_read_small_body(environ))
            src = (job["src_bucket"], job["src_key"], job["src_stamp"])
            return reply(start_response, drive.copy_object(*src, bucket, job["rec"]))
        if (method, op) == ("POST", "revert"):
            job = json.loads(_read_small_body(environ))
            return reply(start_response, {"reverted": drive.revert(**job)})
        return s3_error(start_response, environ, "MethodNotAllowed", f"{method} {op}", 405)


# --------------------------------------------------------------------------- middleware


def _no_health(path: str) -> tuple[str, list[tuple[str, str]]]:
    return "200 OK", []


class MinioGate:
    """WSGI middleware: health endpoints, peer calls, MinIO-like credential checks, log."""

    def __init__(
        self,
        app: WsgiApp,
        root: tuple[str, str],
        verify_signatures: bool,
        policy_lookup: Callable[[str], str | None] = lambda bucket: None,
        health: Callable[[str], tuple[str, list[tuple[str, str]]]] = _no_health,
        internal: WsgiApp | None = None,
    ) -> None:
        self.app = app
        self.root_user, self.root_secret = root
        self.verify_signatures = verify_signatures
        self.policy_lookup = policy_lookup
        self.health = health
        self.internal = internal

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        status_seen: list[str] = []

        def logging_start_response(status: str, headers: list[Any], *rest: Any) -> Any:
            status_seen.append(status)
            return start_response(status, headers, *rest)

        path = environ.get("PATH_INFO", "/")
        try:
            if self.internal is not None and path.startswith(INTERNAL_PREFIX):
                return self.internal(environ, logging_start_response)
            return self._handle(environ, logging_start_response)
        except S3Error as err:
            return s3_error(logging_start_response, environ, err.code, err.message, err.status)
        finally:
            code = status_seen[-1].split()[0] if status_seen else "-"
            quiet = path.startswith(INTERNAL_PREFIX) or "HTTP_X_STANDIN_PROBE" in environ
            if not quiet or code >= "400":
                log(f"{environ['REQUEST_METHOD']} {path} {code}")

    def _handle(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        if path.rstrip("/") in HEALTH_PATHS:
            if method not in ("GET", "HEAD"):
                start_response("405 Method Not Allowed", [("Content-Length", "0")])
                return []
            status, headers = self.health(path)
            start_response(status, [("Content-Length", "0"), *headers])
            return []
        signed = parse_signature(environ)
        if signed is None:
            return self._anonymous(environ, start_response, method, path)
        if signed.access_key != self.root_user:
            return s3_error(
                start_response,
                environ,
                "InvalidAccessKeyId",
                "The Access Key Id you provided does not exist in our records.",
            )
        if signed.version == 4 and self.verify_signatures:
            problem = verify_sigv4(environ, signed, self.root_secret)
            if problem:
                return s3_error(
                    start_response,
                    environ,
                    problem,
                    "The request signature we calculated does not match the "
                    "signature you provided (or the request expired).",
                )
        return self.app(environ, start_response)

    def _anonymous(
        self, environ: dict[str, Any], start_response: Callable[..., Any], method: str, path: str
    ) -> Iterable[bytes]:
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        needed = anonymous_action(method, path, query)
        if needed:
            bucket = path.lstrip("/").split("/", 1)[0]
            if policy_allows(self.policy_lookup(bucket), *needed):
                return self.app(environ, start_response)
        return s3_error(start_response, environ, "AccessDenied", "Access Denied.")


# --------------------------------------------------------------------------- HTTP server


class _Body(io.RawIOBase):
    """A request body as the app reads it: Content-Length bytes, or de-chunked."""

    def __init__(self, rfile: Any, length: int, chunked: bool) -> None:
        super().__init__()
        self.rfile, self.left, self.chunked = rfile, length, chunked
        self.chunk_left = 0
        self.done = not chunked and length == 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            out = bytearray()
            while chunk := self.read(COPY_BLOCK):
                out += chunk
            return bytes(out)
        if self.done or size == 0:
            return b""
        if not self.chunked:
            data = self.rfile.read(min(size, self.left))
            self.left -= len(data)
            if not data or self.left == 0:
                self.done = True
            return data
        if self.chunk_left == 0:
            line = self.rfile.readline(65537)
            try:
                self.chunk_left = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.done = True
                return b""
            if self.chunk_left == 0:
                while self.rfile.readline(65537).strip():
                    pass  # trailers
                self.done = True
                return b""
        data = self.rfile.read(min(size, self.chunk_left))
        self.chunk_left -= len(data)
        if not data:
            self.done = True
        elif self.chunk_left == 0:
            self.rfile.readline(65537)
        return data

    def drain(self, limit: int) -> bool:
        """Read and drop the rest (up to ``limit`` bytes); True when it is all read."""
        while not self.done and limit > 0:
            chunk = self.read(min(65536, limit))
            if not chunk:
                break
            limit -= len(chunk)
        return self.done


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "MinIO-standin"
    sys_version = ""
    timeout = 120  # idle keep-alive connections and silent clients
    disable_nagle_algorithm = True  # head and body are separate writes: no 40 ms stall
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # MinioGate logs each request

    def _run(self) -> None:
        path, _, query = self.path.partition("?")
        if "://" in path:
            path = urlsplit(path).path
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = 0 if chunked else int(self.headers.get("Content-Length") or 0)
        body = _Body(self.rfile, length, chunked)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": unquote(path, encoding="latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": self.path,
            "REQUEST_URI": self.path,
            "SERVER_NAME": self.server.server_name,
            "SERVER_PORT": str(self.server.server_port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": body,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "wsgi.input_terminated": chunked,
            "standin.headers": list(self.headers.items()),
        }
        if self.headers.get("Content-Type"):
            environ["CONTENT_TYPE"] = self.headers["Content-Type"]
        if not chunked and self.headers.get("Content-Length"):
            environ["CONTENT_LENGTH"] = self.headers["Content-Length"]
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = f"{environ[key]},{value}" if key in environ else value
        state: dict[str, Any] = {"sent": False}

        def start_response(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            if exc_info and state["sent"]:
                raise exc_info[1].with_traceback(exc_info[2])
            state["status"], state["headers"] = status, headers
            return lambda data: None

        try:
            result = self.server.app(environ, start_response)
            try:
                for chunk in result:
                    if not state["sent"]:
                        self._send_head(state)
                    if chunk and self.command != "HEAD":
                        self.wfile.write(chunk)
                if not state["sent"]:
                    self._send_head(state)
            finally:
                close = getattr(result, "close", None)
                if close:
                    close()
            self.wfile.flush()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            return
        except Exception:
            log(f"error in {self.command} {path}:\n{traceback.format_exc()}")
            self.close_connection = True
            if not state["sent"]:
                with contextlib.suppress(OSError):
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
            return
        if not body.done and not body.drain(1024 * 1024):
            self.close_connection = True

    def _send_head(self, state: dict[str, Any]) -> None:
        state["sent"] = True
        code, _, reason = state["status"].partition(" ")
        self.send_response(int(code), reason or None)
        has_length = False
        for name, value in state["headers"]:
            if name.lower() == "content-length":
                has_length = True
            self.send_header(name, value)
        if not has_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_OPTIONS = _run


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: WsgiApp) -> None:
        self.app = app
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host up in DNS (getfqdn): not wanted here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


def serve_wsgi(host: str, port: int, app: WsgiApp) -> None:
    with _Server((host or "0.0.0.0", port), app) as server:
        server.serve_forever(poll_interval=0.5)


# --------------------------------------------------------------------------- roles


def exit_on_sigterm(before_exit: Callable[[], None] | None = None) -> None:
    # SystemExit raised in the main thread unwinds serve_forever at once; worker
    # threads are daemons, so the process ends with status 0.
    def stop(*_: object) -> None:
        if before_exit is not None:
            before_exit()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def build_cluster(
    drive_args: list[str], host: str, port: int, hostname: str, auth: PeerAuth
) -> Cluster:
    try:
        endpoints = parse_endpoints(drive_args, port)
    except ValueError as exc:
        raise SystemExit(f"s3_standin: {exc}") from exc
    drives: list[Drive] = []
    peers: dict[tuple[str, int], Peer] = {}
    for endpoint in endpoints:
        if is_local(endpoint, host, port, hostname):
            path = Path(endpoint.path)
            path.mkdir(parents=True, exist_ok=True)
            drives.append(LocalDrive(path))
        else:
            address = (endpoint.host, endpoint.port)
            peer = peers.setdefault(address, Peer(*address))
            drives.append(RemoteDrive(peer, endpoint.path, auth))
    if not any(isinstance(d, LocalDrive) for d in drives):
        raise SystemExit(
            f"s3_standin: no drive of {' '.join(drive_args)} belongs to this instance "
            f"(hostname {hostname!r}, port {port})"
        )
    try:
        quorum = Quorum.for_drives(len(drives), parity_from_env())
    except ValueError as exc:
        raise SystemExit(f"s3_standin: {exc}") from exc
    return Cluster(drives, quorum)


def run_server(drive_args: list[str], address: str, role: str = "server") -> None:
    host, port = parse_address(address)
    root = load_root_credentials()
    auth = PeerAuth(*root)
    cluster = build_cluster(drive_args, host, port, socket.gethostname(), auth)
    verify = os.environ.get("STANDIN_VERIFY_SIGNATURES", "1") not in ("0", "false", "no")
    gate = MinioGate(
        S3Api(cluster),
        root,
        verify_signatures=verify,
        policy_lookup=cluster.bucket_policy,
        health=cluster.health,
        internal=InternalApi(cluster, auth),
    )
    exit_on_sigterm()
    cluster.start()
    q = cluster.quorum
    log(
        f"role={role} listening on {host or '0.0.0.0'}:{port}: {q.drives} drives "
        f"(EC:{q.parity}; read quorum {q.read}, write quorum {q.write}); "
        f"local {', '.join(d.name for d in cluster.local)}; "
        f"peers {', '.join(str(p) for p in cluster.peers) or 'none'}; "
        f"root user {root[0]!r}; signature check {'on' if verify else 'off'}"
    )
    serve_wsgi(host, port, gate)


def standalone_drive() -> str:
    """The drive of a lone instance: $STANDIN_DRIVE, /export, else a temporary directory."""
    configured = os.environ.get("STANDIN_DRIVE")
    if configured:
        return configured
    if Path("/export").is_dir():
        return "/export"
    path = tempfile.mkdtemp(prefix="s3-standin-")
    log(f"no drive given and no /export: objects live in {path} (not kept)")
    return path


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    return (host, int(port)) if sep else (address, default_port)


def connect_upstream(host: str, port: int, deadline_seconds: float) -> socket.socket | None:
    """Resolve and connect afresh each time (swarm DNS may appear late); None on failure."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            return socket.create_connection((host, port), timeout=2.0)
        except OSError:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.25)


def pump(client: socket.socket, upstream: socket.socket) -> int:
    """Copy bytes both ways until both directions are closed; returns bytes moved."""
    peers = {client: upstream, upstream: client}
    moved = 0
    with selectors.DefaultSelector() as selector:
        for sock in peers:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
        open_reads = 2
        while open_reads:
            for key, _ in selector.select():
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data = source.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    return moved  # reset: the other side will see the close
                target = peers[source]
                if not data:
                    # Half-close: pass the EOF on, keep reading the other way.
                    selector.unregister(source)
                    open_reads -= 1
                    with contextlib.suppress(OSError):
                        target.shutdown(socket.SHUT_WR)
                    continue
                try:
                    target.setblocking(True)
                    target.sendall(data)
                    target.setblocking(False)
                except OSError:
                    return moved
                moved += len(data)
    return moved


class RelayHandler(socketserver.BaseRequestHandler):
    upstream: tuple[str, int] = ("minio1", 9000)

    def handle(self) -> None:
        client: socket.socket = self.request
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        host, port = self.upstream
        upstream = connect_upstream(host, port, float(os.environ.get("STANDIN_UPSTREAM_WAIT", 5)))
        if upstream is None:
            log(f"relay {peer} -> {host}:{port} unreachable, closing")
            return  # socketserver closes the client socket
        with upstream:
            moved = pump(client, upstream)
        log(f"relay {peer} -> {host}:{port} closed ({moved} bytes)")


class RelayServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def relay(host: str, port: int, upstream: str) -> None:
    target = split_host_port(upstream, port)
    handler = type("BoundRelayHandler", (RelayHandler,), {"upstream": target})
    with RelayServer((host, port), handler) as server:
        log(f"role=relay listening on {host}:{port} -> {target[0]}:{target[1]}")
        server.serve_forever(poll_interval=0.5)


def auto_role() -> str:
    role = os.environ.get("STANDIN_ROLE", "").strip().lower()
    if role in ("serve", "relay"):
        return role
    primary = os.environ.get("STANDIN_PRIMARY", "minio1")
    hostname = socket.gethostname()
    return "serve" if hostname in (primary, primary.split(".")[0]) else "relay"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="MinIO stand-in: an S3 server with quorum")
    sub = parser.add_subparsers(dest="role", required=True)
    server = sub.add_parser("server", help="MinIO's command line")
    server.add_argument("--address", default=":9000", help="[HOST]:PORT to listen on")
    server.add_argument("--console-address", help="accepted and ignored: there is no console")
    server.add_argument("--certs-dir", "-S", help="accepted and ignored: no TLS")
    for flag in ("--quiet", "--anonymous", "--json"):
        server.add_argument(flag, action="store_true", help="accepted and ignored")
    server.add_argument("drives", nargs="+", help="DIR or http://HOST[:PORT]/DIR, {1...n} expands")
    for name in ("serve", "relay", "auto"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--port", type=int, default=9000)
        cmd.add_argument("--host", default="0.0.0.0")
        if name == "relay":
            cmd.add_argument("--upstream", required=True, help="HOST[:PORT] of the serving one")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    exit_on_sigterm()
    role = args.role
    if role == "server":
        run_server(args.drives, args.address)
        return
    address = f"{args.host}:{args.port}"
    if role == "auto":
        volumes = os.environ.get("STANDIN_VOLUMES", "").split()
        if volumes:
            log(f"auto: server {' '.join(volumes)} (from STANDIN_VOLUMES)")
            run_server(volumes, address)
            return
        role = auto_role()
        args.upstream = f"{os.environ.get('STANDIN_PRIMARY', 'minio1')}:{args.port}"
        log(f"auto: hostname {socket.gethostname()!r} -> {role} (no STANDIN_VOLUMES)")
    if role == "serve":
        run_server([standalone_drive()], address, role="serve")
    else:
        relay(args.host, args.port, args.upstream)


if __name__ == "__main__":
    main()
