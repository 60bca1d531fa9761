"""Lab credentials: generated at the first render, kept 0600, reused, never printed."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
import secrets as _random
import string
from dataclasses import dataclass
from pathlib import Path

import bcrypt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

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

    @property
    def registry(self) -> RegistryTLS:
        """The registry's CA, certificate and accounts (made by the render, read here)."""
        return RegistryTLS(
            self.directory,
            self.file("registry_push_password").read_text().strip(),
            self.file("registry_read_password").read_text().strip(),
        )


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


# ------------------------------------------------------- registry TLS and accounts

PUSH_USER = "lab-push"  # may push and pull
READ_USER = "lab-read"  # may only pull: the load balancer refuses its writes
# Apache htpasswd -B's default cost: every request checks a password (the registry and
# the load balancer keep no session), so a high cost would cost a core under load.
BCRYPT_ROUNDS = 5
CA_DAYS = 3650
# The DNS name the load balancers check the registries' certificate against (the
# registries are reached by address, which nginx and Traefik cannot verify as a name).
REGISTRY_TLS_NAME = "registry"


@dataclass(frozen=True)
class RegistryTLS:
    """The lab CA, the registries' certificate and the two accounts (files under secrets/)."""

    directory: Path
    push_password: str
    read_password: str

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_pem(self) -> str:
        return self.ca_file.read_text()

    @property
    def backend_auth(self) -> str:
        """The Authorization value the load balancer sends the registries (push account)."""
        return (self.directory / "registry_backend_auth").read_text().strip()

    @property
    def lb_users(self) -> list[tuple[str, str]]:
        """(user, bcrypt hash) the load balancer accepts: both accounts."""
        return _htpasswd_entries(self.directory / "lb.htpasswd")


def _htpasswd_entries(path: Path) -> list[tuple[str, str]]:
    return [
        (user, hashed)
        for user, _, hashed in (line.partition(":") for line in path.read_text().splitlines())
        if hashed
    ]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _make_ca(directory: Path, lab: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name(f"{lab} lab CA")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))  # nodes' clocks may lag
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    write_private(directory / "ca.key", _pem_key(key))
    write_private(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))


def _wanted_sans(names: list[str], addresses: list[str]) -> list[x509.GeneralName]:
    dns = sorted({*names, REGISTRY_TLS_NAME, "localhost"})
    ips = sorted({*addresses, "127.0.0.1"}, key=lambda a: ipaddress.ip_address(a).packed)
    return [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]


def _current_sans(cert_file: Path) -> list[x509.GeneralName] | None:
    if not cert_file.exists():
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except (ValueError, x509.ExtensionNotFound):
        return None


def _make_server_cert(directory: Path, sans: list[x509.GeneralName]) -> None:
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(REGISTRY_TLS_NAME))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(ca_cert.not_valid_after_utc)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    write_private(directory / "registry.key", _pem_key(key))
    write_private(directory / "registry.crt", cert_pem)
    # HAProxy wants the certificate and its key in one file.
    write_private(directory / "registry.pem", cert_pem + _pem_key(key))


def _htpasswd(users: list[tuple[str, str]]) -> bytes:
    lines = [
        f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_ROUNDS)).decode()}"
        for user, password in users
    ]
    return ("\n".join(lines) + "\n").encode()


def ensure_registry_tls(
    directory: Path, lab: str, names: list[str], addresses: list[str]
) -> RegistryTLS:
    """The lab CA (made once), a certificate for every name and address the registries and
    load balancers answer on (made again only when that list changes), and the accounts.

    Everything stays as it is from one render to the next, so files that embed the CA
    or a password hash render byte-identical."""
    if not (directory / "ca.crt").exists() or not (directory / "ca.key").exists():
        _make_ca(directory, lab)
        (directory / "registry.crt").unlink(missing_ok=True)  # signed by the old CA
    sans = _wanted_sans(names, addresses)
    if _current_sans(directory / "registry.crt") != sans:
        _make_server_cert(directory, sans)
    push = _ensure(directory / "registry_push_password", lambda: _token(32)).decode()
    read = _ensure(directory / "registry_read_password", lambda: _token(32)).decode()
    # The registries know only the push account: the read-only one exists at the load
    # balancer alone, which forwards every request it lets through as the push account.
    _ensure(directory / "registry.htpasswd", lambda: _htpasswd([(PUSH_USER, push)]))
    _ensure(directory / "lb.htpasswd", lambda: _htpasswd([(PUSH_USER, push), (READ_USER, read)]))
    _ensure(
        directory / "registry_backend_auth",
        lambda: base64.b64encode(f"{PUSH_USER}:{push}".encode()),
    )
    # curl's config on the nodes: the push account, so no password is on a command line.
    _ensure(directory / "curlrc", lambda: f'user = "{PUSH_USER}:{push}"\n'.encode())
    for name in ("ca.crt", "registry.crt"):
        os.chmod(directory / name, 0o600)
    return RegistryTLS(directory, push, read)
