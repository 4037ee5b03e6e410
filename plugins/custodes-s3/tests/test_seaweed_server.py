"""The tests' S3 server itself: a real SeaweedFS that listens on loopback only, refuses unsigned requests, and
leaves nothing behind when stopped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from custodes_s3 import testing
from custodes_s3.testing import Seaweed


def test_it_listens_on_loopback_only_and_in_its_folder(seaweed: Seaweed) -> None:
    found = testing.listening(seaweed.pid)
    tcp = [a for a in found if not a.startswith("/")]
    sockets = [a for a in found if a.startswith("/")]
    assert tcp and all(a.startswith("127.0.0.1:") for a in tcp), found
    assert {int(a.rsplit(":", 1)[1]) for a in tcp} <= {p + d for p in seaweed.ports.values() for d in (0, 10000)}
    # Its own local sockets are in its folder; the gRPC ones are where weed names them (no flag moves them).
    assert {str(seaweed.folder / "filer.sock"), str(seaweed.folder / "s3.sock")} <= set(sockets)
    assert all(s.startswith(str(seaweed.folder)) or s.startswith("/tmp/seaweedfs-") for s in sockets)


def test_requests_must_be_signed_by_its_identity(seaweed: Seaweed) -> None:
    from botocore import UNSIGNED

    testing.make_bucket(seaweed, "signed-only")
    anonymous = testing.client(seaweed, signature_version=UNSIGNED)
    with pytest.raises(ClientError, match="AccessDenied"):
        anonymous.put_object(Bucket="signed-only", Key="k", Body=b"x")
    stranger = testing.client(Seaweed(seaweed.endpoint, "SOMEONEELSE", "wrong", 0, {}, seaweed.folder))
    with pytest.raises(ClientError, match="InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied"):
        stranger.list_objects_v2(Bucket="signed-only")


def test_stopping_leaves_nothing_listening(tmp_path: Path) -> None:
    with testing.seaweed_server(tmp_path / "s3") as server:
        testing.make_bucket(server, "short-lived")
        assert testing.client(server).get_bucket_versioning(Bucket="short-lived")["Status"] == "Enabled"
        pid, ports = server.pid, server.ports
    assert testing.listening(pid) == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not [p for p in ports.values() if os.path.exists(f"/tmp/seaweedfs-master-grpc-{p + 10000}.sock")]
    assert not list(Path("/tmp").glob(f"weed.*{pid}*"))  # glog's files: none, it logs to the folder
