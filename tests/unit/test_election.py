"""The restore's election nudge: what it reads from a manager's disk and what it sends."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lab.providers.local import election


def _wal_frame(record: bytes) -> bytes:
    return len(record).to_bytes(8, "little") + record


def _record(kind: int, data: bytes = b"") -> bytes:
    body = b"\x08" + election._varint(kind) + b"\x10" + election._varint(1234)  # type, crc
    if data:
        body += b"\x1a" + election._varint(len(data)) + data
    return body


def _raft_node(raft_id: int, node_id: bytes, addr: bytes) -> bytes:
    return (
        b"\x08" + election._varint(raft_id)
        + b"\x12" + election._varint(len(node_id)) + node_id
        + b"\x1a" + election._varint(len(addr)) + addr
    )  # fmt: skip


def test_the_raft_id_is_read_from_the_wal_metadata_record() -> None:
    raft_id = 0x3BB4307AD9E6CC32
    metadata = _raft_node(raft_id, b"k7yd0axv0j2eralp5b7l4iv7z", b"10.0.0.2:2377")
    head = (
        _wal_frame(_record(4))  # crc record first, as etcd writes it
        + _wal_frame(_record(1, metadata))
        + _wal_frame(_record(5, b"\x08\x00\x10\x00"))
    )
    assert election.wal_metadata_raft_id(head) == raft_id


def test_a_wal_without_metadata_is_an_error_not_a_wrong_id() -> None:
    head = _wal_frame(_record(4)) + _wal_frame(_record(5, b"\x08\x00"))
    try:
        election.wal_metadata_raft_id(head)
    except ValueError as error:
        assert "metadata" in str(error)
    else:
        raise AssertionError("a WAL head without metadata must not yield an ID")


def test_the_request_is_a_timeout_now_addressed_to_the_member() -> None:
    request = dict(election._fields(election.timeout_now_request(77)))
    message = dict(election._fields(request[1]))
    assert message == {1: election.MSG_TIMEOUT_NOW, 2: 77}  # no term: raft takes it as is


def test_swarmkits_key_headers_are_dropped_so_tls_can_load_the_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    begin, rest = key.split(b"\n", 1)
    with_headers = begin + b"\nkek-version: 0\nraft-dek: c2VjcmV0\n\n" + rest
    cleaned = election._without_pem_headers(with_headers)
    assert b"raft-dek" not in cleaned
    serialization.load_pem_private_key(cleaned, password=None)


def _manager(tmp_path: Path, name: str, with_wal: bool = True) -> election.Manager:
    swarm = tmp_path / name / "swarm"
    (swarm / "raft" / ("wal-v3-encrypted" if with_wal else "other")).mkdir(parents=True)
    return election.Manager(name, "127.0.0.1", swarm)


def test_no_nudge_without_a_swarm_of_several_managers(tmp_path: Path) -> None:
    """Before the swarm phase (no WAL) and with one manager raft needs no help."""
    said: list[str] = []
    lone = [_manager(tmp_path, "a"), _manager(tmp_path, "b", with_wal=False)]
    assert not election.hurry_election(lone, lambda: False, say=said.append)
    assert said == []


def test_nothing_is_sent_once_a_leader_exists(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    sent: list[str] = []
    monkeypatch.setattr(election, "tcp_open", lambda *a, **k: True)
    monkeypatch.setattr(election, "send_timeout_now", lambda m, **k: sent.append(m.name))
    monkeypatch.setattr(election.time, "sleep", lambda s: None)
    managers = [_manager(tmp_path, n) for n in ("a", "b", "c")]
    assert not election.hurry_election(managers, lambda: True, say=print)
    assert sent == []


def test_a_failed_nudge_is_reported_and_the_next_manager_is_asked(
    tmp_path: Path,
    monkeypatch,  # noqa: ANN001
) -> None:
    asked: list[str] = []

    def send(manager: election.Manager, **_: object) -> None:
        asked.append(manager.name)
        if manager.name == "a":
            raise ConnectionError("refused")

    monkeypatch.setattr(election, "tcp_open", lambda *a, **k: True)
    monkeypatch.setattr(election, "send_timeout_now", send)
    monkeypatch.setattr(election.time, "sleep", lambda s: None)
    clock = iter(range(0, 10_000))
    monkeypatch.setattr(election.time, "monotonic", lambda: next(clock) * 0.05)
    said: list[str] = []
    managers = [_manager(tmp_path, n) for n in ("a", "b", "c")]
    assert election.hurry_election(managers, lambda: asked[-1:] == ["b"], say=said.append)
    assert asked == ["a", "b"]
    assert said == ["could not ask a to start the election: ConnectionError"]
