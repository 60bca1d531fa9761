"""The registry behind TLS and accounts (registry.tls, on by default), and the tutorial's
open registry when it is off: what the render gives each consumer."""

from __future__ import annotations

import copy
import json
import ssl
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from cryptography import x509

from lab.render import render
from lab.secrets import PUSH_USER, READ_USER
from lab.spec import parse_spec


@pytest.fixture
def built(lab_data: dict[str, Any], tmp_path: Path) -> Path:
    return render(parse_spec(lab_data), tmp_path / "build").build


def _secret(build: Path, name: str) -> str:
    return (build / "secrets" / name).read_text()


def test_the_certificate_names_every_node_and_the_front_address(built: Path) -> None:
    cert = x509.load_pem_x509_certificate((built / "secrets/registry.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(sans.get_values_for_type(x509.DNSName))
    addresses = {str(a) for a in sans.get_values_for_type(x509.IPAddress)}
    assert {"coreos1", "coreos2", "coreos3", "localhost"} <= names
    assert {"172.17.8.101", "172.17.8.102", "172.17.8.103", "127.0.0.1"} <= addresses
    # The lab CA signed it: python's own verification accepts it for a node's address.
    ca = ssl.create_default_context(cafile=str(built / "secrets/ca.crt"))
    assert ca.get_ca_certs()[0]["subject"]
    ca_cert = x509.load_pem_x509_certificate((built / "secrets/ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca_cert)


def test_a_new_node_gets_a_new_certificate_from_the_same_ca(
    lab_data: dict[str, Any], built: Path
) -> None:
    ca_before = _secret(built, "ca.crt")
    data = copy.deepcopy(lab_data)
    data["loadbalancer"] = {"nodes": ["coreos1", "coreos2"], "vip": "172.17.8.100"}
    render(parse_spec(data), built)
    assert _secret(built, "ca.crt") == ca_before
    cert = x509.load_pem_x509_certificate((built / "secrets/registry.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "172.17.8.100" in {str(a) for a in sans.get_values_for_type(x509.IPAddress)}


def test_accounts_are_bcrypt_and_the_registries_know_only_the_push_account(built: Path) -> None:
    push = _secret(built, "registry_push_password").strip()
    read = _secret(built, "registry_read_password").strip()
    registry_users = dict(
        line.split(":", 1) for line in _secret(built, "registry.htpasswd").splitlines()
    )
    lb_users = dict(line.split(":", 1) for line in _secret(built, "lb.htpasswd").splitlines())
    assert set(registry_users) == {PUSH_USER}
    assert set(lb_users) == {PUSH_USER, READ_USER}
    assert bcrypt.checkpw(push.encode(), registry_users[PUSH_USER].encode())
    assert bcrypt.checkpw(read.encode(), lb_users[READ_USER].encode())
    assert not bcrypt.checkpw(read.encode(), lb_users[PUSH_USER].encode())


def test_every_load_balancer_refuses_the_read_only_accounts_writes(built: Path) -> None:
    haproxy = (built / "lb/haproxy.cfg").read_text()
    assert "bind :80 ssl crt /etc/lab-tls/registry.pem" in haproxy
    assert "http-request auth realm ha-registry-lab unless { http_auth(lab_accounts) }" in haproxy
    assert "status 403" in haproxy and "unless METH_GET or" in haproxy
    assert f"group pushers users {PUSH_USER}" in haproxy
    nginx = (built / "lb/nginx.conf").read_text()
    assert f'"~^{READ_USER}:(GET|HEAD)$" 0;' in nginx and f'"~^{READ_USER}:" 1;' in nginx
    assert "listen 80 ssl;" in nginx and "proxy_ssl_verify on;" in nginx
    dynamic = yaml.safe_load((built / "lb/traefik-dynamic.yml").read_text())
    routers, middlewares = dynamic["http"]["routers"], dynamic["http"]["middlewares"]
    write_auth = middlewares[routers["registry-write"]["middlewares"][0]]["basicAuth"]["users"]
    read_auth = middlewares[routers["registry-read"]["middlewares"][0]]["basicAuth"]["users"]
    assert [u.split(":")[0] for u in write_auth] == [PUSH_USER]
    assert sorted(u.split(":")[0] for u in read_auth) == sorted([PUSH_USER, READ_USER])
    assert "!Method(`GET`)" in routers["registry-write"]["rule"]


def test_configs_holding_the_backend_login_are_private(built: Path) -> None:
    auth = _secret(built, "registry_backend_auth").strip()
    for name in ("lb/haproxy.cfg", "lb/nginx.conf", "lb/traefik-dynamic.yml"):
        path = built / name
        assert auth in path.read_text(), name
        assert path.stat().st_mode & 0o077 == 0, name


def test_nodes_trust_the_ca_and_list_nothing_as_insecure(built: Path) -> None:
    daemon = json.loads((built / "files/daemon.json").read_text())
    assert "insecure-registries" not in daemon
    ignition = json.loads((built / "coreos2.ign").read_text())
    paths = {f["path"] for f in ignition["storage"]["files"]}
    assert "/etc/docker/certs.d/172.17.8.101:80/ca.crt" in paths
    registry = yaml.safe_load((built / "registry/coreos2.yml").read_text())
    assert registry["http"]["tls"]["certificate"] == "/etc/docker/registry/tls/registry.crt"
    assert registry["auth"]["htpasswd"]["path"] == "/etc/docker/registry/tls/htpasswd"


def test_tls_off_renders_the_tutorials_open_registry(
    lab_data: dict[str, Any], tmp_path: Path
) -> None:
    data = copy.deepcopy(lab_data)
    data.setdefault("registry", {})["tls"] = False
    build = render(parse_spec(data), tmp_path / "open").build
    assert json.loads((build / "files/daemon.json").read_text())["insecure-registries"] == [
        "172.17.8.0/24"
    ]
    registry = yaml.safe_load((build / "registry/coreos1.yml").read_text())
    assert "tls" not in registry["http"] and "auth" not in registry
    assert "ssl" not in (build / "lb/haproxy.cfg").read_text()
    assert not (build / "secrets/ca.crt").exists()
