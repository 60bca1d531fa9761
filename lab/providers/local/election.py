"""Start the swarm's leader election at once after a restore, instead of after a timeout.

A restore restarts every manager at the same moment. Each raft member then waits a
randomized election timeout (10 to 19 ticks of 1 s, hard-coded in swarmkit; dockerd
20.10 refuses the daemon.json keys that would shorten it) before anyone campaigns,
and dockerd answers nothing until a leader exists: 10-20 s of idle CPU per replay.

A leader that hands its leadership over tells the chosen member "time out now"
(raft's MsgTimeoutNow): that member campaigns at once and the others vote as in any
election. This module sends that message to one restored manager, over the swarm's
own gRPC port with that node's own manager certificate, so the election runs when
the managers are up rather than when their timers expire. The vote is raft's usual
one: a member whose log is behind cannot win. Nothing else changes: failures during
drills still wait out the real timeouts, as every message here is sent only by the
restore. Best effort: if the message cannot be sent, raft's timers elect a leader
as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.host.proc import tcp_open

SWARM_PORT = 2377
PROCESS_RAFT_MESSAGE = "/docker.swarmkit.v1.Raft/ProcessRaftMessage"
MSG_TIMEOUT_NOW = 14  # raftpb.MessageType
MANAGER_NAME = "swarm-manager"  # a DNS name in every manager's certificate
WAL_METADATA = 1  # walpb record type
WAL_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Manager:
    """One restored node as the swarm sees it: its address and its certificates."""

    name: str
    address: str
    swarm_dir: Path  # <data-root>/swarm

    @property
    def wal_dir(self) -> Path | None:
        for name in ("wal-v3-encrypted", "wal-v3"):
            if (self.swarm_dir / "raft" / name).is_dir():
                return self.swarm_dir / "raft" / name
        return None

    def raft_id(self) -> int:
        """The member's raft ID: the first field of the WAL's metadata record (not
        encrypted), which swarmkit checks against every message's To."""
        if self.wal_dir is None:
            raise ValueError(f"{self.name} is no swarm manager")
        first = sorted(self.wal_dir.glob("*.wal"))[0]
        return wal_metadata_raft_id(first.read_bytes()[:WAL_HEAD_BYTES])

    def credentials(self) -> tuple[bytes, bytes, bytes]:
        """(CA, private key, certificate) in PEM, as gRPC takes them."""
        certs = self.swarm_dir / "certificates"
        key = _without_pem_headers((certs / "swarm-node.key").read_bytes())
        return (
            (certs / "swarm-root-ca.crt").read_bytes(),
            key,
            (certs / "swarm-node.crt").read_bytes(),
        )


def _without_pem_headers(pem: bytes) -> bytes:
    """swarmkit keeps its raft key in headers of the node key's PEM block (``raft-dek:``);
    TLS libraries refuse a key block with headers, so they are dropped."""
    lines = pem.splitlines()
    return b"\n".join(line for line in lines if line.strip() and b": " not in line) + b"\n"


def wal_metadata_raft_id(head: bytes) -> int:
    """Walk etcd WAL frames (8-byte length, then a walpb.Record) to the metadata record
    (type 1) and read api.RaftNode's raft_id (field 1) from its data."""
    offset = 0
    while offset + 8 <= len(head):
        frame = int.from_bytes(head[offset : offset + 8], "little")
        size = frame & ((1 << 56) - 1)
        padding = (frame >> 56) & 0x7 if frame >> 63 else 0
        record = dict(_fields(head[offset + 8 : offset + 8 + size]))
        offset += 8 + size + padding
        if record.get(1) == WAL_METADATA and isinstance(record.get(3), bytes):
            raft_id = dict(_fields(record[3])).get(1)
            if isinstance(raft_id, int):
                return raft_id
    raise ValueError("no metadata record at the head of the raft WAL")


def _read_varint(data: bytes, index: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[index]
        index += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, index


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints and length-delimited only
    (fixed-size fields are skipped), which is all a WAL record and a RaftNode hold."""
    index, found = 0, []
    while index < len(data):
        key, index = _read_varint(data, index)
        number, kind = key >> 3, key & 0x7
        if kind == 0:
            value, index = _read_varint(data, index)
            found.append((number, value))
        elif kind == 2:
            length, index = _read_varint(data, index)
            found.append((number, data[index : index + length]))
            index += length
        elif kind in (1, 5):
            index += 8 if kind == 1 else 4
        else:
            raise ValueError(f"unexpected protobuf wire type {kind}")
    return found


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def timeout_now_request(raft_id: int) -> bytes:
    """ProcessRaftMessageRequest{message: raftpb.Message{type: MsgTimeoutNow, to: id}}.

    Term 0 marks a message raft takes without comparing terms (as its own local
    ones); swarmkit refuses a message whose To is not the member's raft ID."""
    message = b"\x08" + _varint(MSG_TIMEOUT_NOW) + b"\x10" + _varint(raft_id)  # type, to
    return b"\x0a" + _varint(len(message)) + message  # field 1, bytes: message


def send_timeout_now(manager: Manager, deadline: float = 3.0) -> None:
    """Tell ``manager`` to campaign now; raises on any failure (grpc's errors)."""
    import grpc  # only the local provider's restores need it

    ca, key, cert = manager.credentials()
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    options = [("grpc.ssl_target_name_override", MANAGER_NAME)]
    target = f"{manager.address}:{SWARM_PORT}"
    with grpc.secure_channel(target, credentials, options=options) as channel:
        call = channel.unary_unary(
            PROCESS_RAFT_MESSAGE,
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        call(timeout_now_request(manager.raft_id()), timeout=deadline)


def hurry_election(
    managers: list[Manager],
    elected: Callable[[], bool],
    *,
    say: Callable[[str], None],
    give_up_after: float = 15.0,
) -> bool:
    """Once every manager listens, ask one after another to campaign until ``elected()``.

    Returns whether a nudge was sent and a leader followed. Never raises: raft's own
    timers remain the fallback."""
    managers = [m for m in managers if m.wal_dir is not None]
    if len(managers) < 2:
        return False  # no swarm, or one manager: raft elects a lone member at once
    started = time.monotonic()
    while not all(tcp_open(m.address, SWARM_PORT, timeout=0.3) for m in managers):
        if elected() or time.monotonic() - started > give_up_after:
            return False
        time.sleep(0.1)
    time.sleep(0.3)  # the raft member starts just after the port opens
    attempt = 0
    while time.monotonic() - started < give_up_after:
        if elected():
            return attempt > 0
        manager = managers[attempt % len(managers)]
        attempt += 1
        try:
            send_timeout_now(manager)
        except Exception as error:  # noqa: BLE001 - best effort, raft's timers stay
            say(f"could not ask {manager.name} to start the election: {type(error).__name__}")
        wait_until = time.monotonic() + 2.0
        while time.monotonic() < wait_until:
            if elected():
                return True
            time.sleep(0.1)
    return False
