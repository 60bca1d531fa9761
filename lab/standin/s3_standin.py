#!/usr/bin/env python3
"""MinIO stand-in for the local provider: moto's S3 server behind MinIO-like checks.

MinIO binaries cannot be had on the local provider's hosts, so each of the four
services minio1..minio4 runs this one file instead. Moto keeps objects in the
memory of a single process, so exactly one service holds the store ("serve") and
the others forward their published port to it ("relay"): all four ports reach
one shared bucket, as they reach one distributed MinIO cluster in the article.

Usage (stdlib + moto[s3], flask and flask-cors only; it must not import the ``lab`` package):

    s3_standin.py serve --port 9000 [--host 0.0.0.0]
    s3_standin.py relay --port 9000 --upstream minio1:9000 [--host 0.0.0.0]
    s3_standin.py auto  --port 9000 [--host 0.0.0.0]

``auto`` serves when ``$STANDIN_ROLE`` is ``serve``, relays when it is ``relay``,
and otherwise serves when the hostname equals ``$STANDIN_PRIMARY`` (default
``minio1``) and relays to ``$STANDIN_PRIMARY:<port>`` elsewhere. Swarm names a
container after its ID, so the stack file must set ``hostname: minio1`` etc.

What "serve" enforces, and what it does not:

* ``GET``/``HEAD`` on ``/minio/health/live``, ``/ready``, ``/cluster`` and
  ``/cluster/read`` answer 200 without credentials (as MinIO does).
* Root credentials come from ``MINIO_ROOT_USER_FILE``/``MINIO_ROOT_PASSWORD_FILE``
  (a relative name resolves under /run/secrets/), else ``MINIO_ROOT_USER``/
  ``MINIO_ROOT_PASSWORD``, else MinIO's default ``minioadmin``/``minioadmin``.
  They are the only accepted keys; there are no other users.
* A signed request (``Authorization`` header, or presigned ``X-Amz-Credential``
  / ``AWSAccessKeyId`` query) with another access key -> 403 InvalidAccessKeyId.
* SigV4 signatures (header and presigned) are verified against the root secret
  -> 403 SignatureDoesNotMatch; presigned URLs past ``X-Amz-Expires`` -> 403.
  Not verified: SigV2 signatures (access key only), the body against
  ``x-amz-content-sha256``, per-chunk signatures of aws-chunked uploads, and
  clock skew of ``X-Amz-Date``. ``STANDIN_VERIFY_SIGNATURES=0`` turns the
  signature check off (access keys are still checked).
* An anonymous request -> 403 AccessDenied unless the bucket policy stored by
  moto (PutBucketPolicy) has an ``Allow`` statement for ``Principal: "*"`` whose
  Action and Resource (``*``/``?`` wildcards) match the request; a matching
  ``Deny`` wins. Mapped actions: s3:GetObject (GET/HEAD object), s3:PutObject
  (PUT object, multipart), s3:DeleteObject, s3:ListBucket (GET/HEAD bucket),
  s3:ListBucketMultipartUploads, s3:ListMultipartUploadParts,
  s3:AbortMultipartUpload, s3:GetBucketLocation. Allow statements with
  ``Condition``, ``NotAction``, ``NotResource`` or ``NotPrincipal`` never grant
  access; a Deny statement applies when its Action and Resource match, as if its
  Condition held (NotAction/NotResource Denies are ignored). Anything else
  anonymous (list buckets, create bucket, bucket sub-resources) is denied.
* Buckets are path-style only (as MinIO without MINIO_DOMAIN).

"relay" is a plain TCP relay: it resolves the upstream at each connection (swarm
DNS may come up after the relay), retries the connect for ``$STANDIN_UPSTREAM_WAIT``
seconds (default 5), and
closes the client connection when the upstream stays unreachable. Health checks
through a relay are therefore answered by the serving instance.

Logs: a start-up line naming the role; "serve" logs one line per request
(method, path, status), "relay" one line per connection. SIGTERM exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fnmatch
import hashlib
import hmac
import io
import json
import os
import pickle
import re
import selectors
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

HEALTH_PATHS = frozenset(
    {
        "/minio/health/live",
        "/minio/health/ready",
        "/minio/health/cluster",
        "/minio/health/cluster/read",
    }
)
SECRETS_DIR = Path("/run/secrets")
DEFAULT_ROOT = ("minioadmin", "minioadmin")
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024


def log(message: str) -> None:
    # stdout, flushed: `docker service logs` shows it at once.
    print(f"{dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ} {message}", flush=True)


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


def s3_error(
    start_response: Callable[..., Any],
    environ: dict[str, Any],
    code: str,
    message: str,
    status: str = "403 Forbidden",
) -> list[bytes]:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{_xml_escape(environ.get('PATH_INFO', '/'))}</Resource>"
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    ).encode()
    _drain_body(environ)
    headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
    start_response(status, headers)
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
    # No declared hash: hash the body ourselves and hand moto a fresh copy.
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
    if set(query) - {"uploads", "partNumber", "versionId"}:
        return None  # acl, tagging, retention, ...: not for anonymous users
    return {
        "GET": "s3:GetObject",
        "HEAD": "s3:GetObject",
        "PUT": "s3:PutObject",
        "POST": "s3:PutObject" if "uploads" in query else None,
        "DELETE": "s3:DeleteObject",
    }.get(method)


def _bucket_action(method: str, query: dict[str, str]) -> str | None:
    listing_params = {
        "prefix",
        "delimiter",
        "marker",
        "max-keys",
        "list-type",
        "continuation-token",
        "start-after",
        "encoding-type",
        "fetch-owner",
    }
    if method in ("GET", "HEAD") and set(query) <= listing_params:
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


def moto_bucket_policy(bucket: str) -> str | None:
    """The policy moto stores for a bucket (read in-process), or None."""
    from moto.s3.models import s3_backends

    try:
        partition, account = s3_backends.bucket_accounts[bucket]
        policy = s3_backends[account][partition].buckets[bucket].policy
    except (KeyError, AttributeError):
        return None
    return policy.decode() if isinstance(policy, bytes) else policy


# --------------------------------------------------------------------------- middleware


class MinioGate:
    """WSGI middleware: health endpoints, MinIO-like credential checks, request log."""

    def __init__(
        self,
        app: WsgiApp,
        root: tuple[str, str],
        verify_signatures: bool,
        policy_lookup: Callable[[str], str | None] = moto_bucket_policy,
    ) -> None:
        self.app = app
        self.root_user, self.root_secret = root
        self.verify_signatures = verify_signatures
        self.policy_lookup = policy_lookup

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        status_seen: list[str] = []

        def logging_start_response(status: str, headers: list[Any], *rest: Any) -> Any:
            status_seen.append(status)
            return start_response(status, headers, *rest)

        try:
            return self._handle(environ, logging_start_response)
        finally:
            code = status_seen[-1].split()[0] if status_seen else "-"
            log(f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '/')} {code}")

    def _handle(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "/")
        if path.rstrip("/") in HEALTH_PATHS:
            status = "200 OK" if method in ("GET", "HEAD") else "405 Method Not Allowed"
            start_response(status, [("Content-Length", "0")])
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


def build_moto_app() -> WsgiApp:
    # MinIO is path-style (bucket in the path, never in the Host header); moto reads
    # this setting at import time, so it must be set before the import below.
    os.environ.setdefault("S3_IGNORE_SUBDOMAIN_BUCKETNAME", "true")
    from moto.moto_server.werkzeug_app import create_backend_app

    return create_backend_app("s3")


# --------------------------------------------------------------------------- roles


class StorePersister:
    """Keeps moto's in-memory store in a file, so a restarted container finds its objects.

    MinIO keeps its data on disk (/export, on the lab's shared directory); the
    stand-in does the same with a pickle of moto's S3 backends, written a second
    after the last change and on SIGTERM. Checkpoints copy the shared directory,
    so they carry the store too.
    """

    def __init__(self, path: Path):
        self.path = path
        self.dirty = threading.Event()
        self.lock = threading.Lock()

    def load(self) -> None:
        from moto.s3.models import s3_backends

        if not self.path.exists():
            return
        saved = pickle.loads(self.path.read_bytes())
        for account, partitions in saved["backends"].items():
            for partition, backend in partitions.items():
                s3_backends[account][partition] = backend
        s3_backends.bucket_accounts.update(saved["bucket_accounts"])
        log(f"store loaded from {self.path}")

    def dump(self) -> None:
        from moto.s3.models import s3_backends

        with self.lock:
            self.dirty.clear()
            state = {
                "backends": {a: dict(s3_backends[a]) for a in list(s3_backends.keys())},
                "bucket_accounts": dict(s3_backends.bucket_accounts),
            }
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_bytes(pickle.dumps(state))
            os.replace(tmp, self.path)

    def keep_saving(self) -> None:
        while True:
            self.dirty.wait()
            time.sleep(1.0)  # one write for a burst of requests
            self.dump()

    def wrap(self, app: WsgiApp) -> WsgiApp:
        def marking(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            try:
                return app(environ, start_response)
            finally:
                if environ["REQUEST_METHOD"] not in ("GET", "HEAD", "OPTIONS"):
                    self.dirty.set()

        return marking


def store_path() -> Path | None:
    configured = os.environ.get("STANDIN_STATE")
    if configured:
        return Path(configured)
    export = Path("/export")
    return export / ".standin-store.pickle" if export.is_dir() else None


def exit_on_sigterm(before_exit: Callable[[], None] | None = None) -> None:
    # SystemExit raised in the main thread unwinds serve_forever at once; worker
    # threads are daemons, so the process ends with status 0.
    def stop(*_: object) -> None:
        if before_exit is not None:
            before_exit()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def serve(host: str, port: int) -> None:
    import logging

    from werkzeug.serving import run_simple

    root = load_root_credentials()
    verify = os.environ.get("STANDIN_VERIFY_SIGNATURES", "1") not in ("0", "false", "no")
    app: WsgiApp = MinioGate(build_moto_app(), root, verify_signatures=verify)
    path = store_path()
    if path is not None:
        persister = StorePersister(path)
        persister.load()
        app = persister.wrap(app)
        threading.Thread(target=persister.keep_saving, daemon=True).start()
        exit_on_sigterm(persister.dump)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # we log requests ourselves
    log(
        f"role=serve listening on {host}:{port} (moto S3, root user {root[0]!r}, "
        f"signature check {'on' if verify else 'off'})"
    )
    run_simple(host, port, app, threaded=True, use_reloader=False, use_debugger=False)


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
    parser = argparse.ArgumentParser(description="MinIO stand-in built on moto's S3 server")
    sub = parser.add_subparsers(dest="role", required=True)
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
    role, upstream = args.role, getattr(args, "upstream", None)
    if role == "auto":
        role = auto_role()
        upstream = f"{os.environ.get('STANDIN_PRIMARY', 'minio1')}:{args.port}"
        log(f"auto: hostname {socket.gethostname()!r} -> {role}")
    if role == "serve":
        serve(args.host, args.port)
    else:
        relay(args.host, args.port, upstream or "minio1:9000")


if __name__ == "__main__":
    main()
