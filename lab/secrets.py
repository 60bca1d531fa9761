"""Lab credentials: generated at the first render, kept 0600, reused, never printed."""

from __future__ import annotations

import os
import secrets as _random
import string
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

SECRETS_DIRNAME = "secrets"
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class LabSecrets:
    directory: Path
    minio_access_key: str
    minio_secret_key: str
    registry_http_secret: str
    ssh_public_key: str

    @property
    def ssh_private_key_file(self) -> Path:
        return self.directory / "ssh_key"

    @property
    def ssh_public_key_file(self) -> Path:
        return self.directory / "ssh_key.pub"

    def file(self, name: str) -> Path:
        return self.directory / name


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` 0600 from the start (no window where it is world-readable)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _ensure(path: Path, make: callable) -> bytes:  # type: ignore[valid-type]
    if not path.exists():
        write_private(path, make())
    os.chmod(path, 0o600)
    return path.read_bytes()


def _token(length: int) -> bytes:
    return "".join(_random.choice(_ALPHABET) for _ in range(length)).encode()


def write_ed25519_keypair(private_file: Path, public_file: Path, comment: str) -> None:
    """A new OpenSSH ed25519 key pair, both files 0600 from the start."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    write_private(private_file, private)
    write_private(public_file, public + f" {comment}\n".encode())


def _ssh_keypair(directory: Path) -> str:
    private_file = directory / "ssh_key"
    public_file = directory / "ssh_key.pub"
    if not private_file.exists():
        write_ed25519_keypair(private_file, public_file, "ha-registry-lab")
    os.chmod(private_file, 0o600)
    os.chmod(public_file, 0o600)
    return public_file.read_text().strip()


def ensure_secrets(build: Path) -> LabSecrets:
    """Load the lab's secrets from ``build/secrets``, generating what is missing."""
    directory = build / SECRETS_DIRNAME
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    return LabSecrets(
        directory=directory,
        minio_access_key=_ensure(directory / "minio_access_key", lambda: _token(20)).decode(),
        minio_secret_key=_ensure(directory / "minio_secret_key", lambda: _token(40)).decode(),
        registry_http_secret=_ensure(
            directory / "registry_http_secret", lambda: _token(48)
        ).decode(),
        ssh_public_key=_ssh_keypair(directory),
    )
