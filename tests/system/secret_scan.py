"""Find the lab's secrets in text the kit printed or wrote, naming only where they are.

Every file under build/<lab>/secrets/ counts: passwords, keys and tokens whole and line
by line, private keys by their base64 lines, htpasswd lines by their hashes. Public
material (the CA's and the registries' certificates, the SSH public key) may be shown
and is left out. A finding names the secret file and the place, never the value."""

from __future__ import annotations

import re
from pathlib import Path

SECRETS_DIRNAME = "secrets"
PUBLIC = {"ca.crt", "registry.crt", "ssh_key.pub"}
MIN_LENGTH = 12  # shorter fragments (PEM armour, user names) are not secret on their own
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----\n(.*?)\n-----END \1-----", re.S)


def _pieces(name: str, text: str) -> list[str]:
    blocks = PEM_BLOCK.findall(text)
    if blocks:  # only the private parts of a PEM file are secret
        return [line for kind, body in blocks if "PRIVATE" in kind for line in body.split("\n")]
    pieces = [text.strip(), *text.splitlines()]
    if name.endswith("htpasswd"):  # user:hash, the hash is the secret
        pieces += [line.partition(":")[2] for line in text.splitlines()]
    return pieces


def secret_values(build: Path) -> dict[str, set[str]]:
    """secret file name -> the strings that must never be shown."""
    found: dict[str, set[str]] = {}
    for path in sorted((build / SECRETS_DIRNAME).iterdir()):
        if path.name in PUBLIC or not path.is_file():
            continue
        values = {p.strip() for p in _pieces(path.name, path.read_text()) if p.strip()}
        found[path.name] = {v for v in values if len(v) >= MIN_LENGTH}
    return found


def leaks(outputs: dict[str, str], secrets: dict[str, set[str]]) -> list[str]:
    """'<secret file> in <where>' for every secret found in any output."""
    return [
        f"{name} in {where}"
        for where, text in outputs.items()
        for name, values in secrets.items()
        if any(value in text for value in values)
    ]
