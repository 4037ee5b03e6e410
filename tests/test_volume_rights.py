"""Issue 13: the archive service reads a caller's folder only as far as the caller could (custodes.rights).

A custodian (alice, a real account) hands the service a device volume of her own that holds what she may not
read: a clip 0600 of the service's account, a subfolder 0700 of another officer, a link out of the volume. The
service refuses the request (exit 2, one line naming the entry and why) and nothing of it reaches the archive.
What she can read ingests as it does embedded; a group counts only when her process holds it; a POSIX ACL is
decided as the kernel decides it (the kernel itself is the oracle here). Everything through the real CLI, the
real service and real footage.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import pwd
import shutil
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import (
    FOOTAGE,
    SERVICE_ACCOUNT,
    account_python,
    as_account,
    catalog_rows,
    ensure_accounts,
    one_line_error,
    person_folder,
    run_cli,
    serve,
    shared_witness,
)

CLIPS = {"GH010001.MP4": FOOTAGE / "gopro" / "max-heromode.mp4", "GH010002.MP4": FOOTAGE / "phones" / "bt601.mov"}
SECRET = FOOTAGE / "phones" / "dolbyVision-hdr.MOV"  # in no other volume of these tests
GOPRO = "DCIM/100GOPRO"
REFUSED = "the archive service reads a folder only as far as you could read it yourself"


def _card(tmp_path: Path, name: str = "GOPRO-CARD") -> Path:
    """A GoPro card of alice's own: her folders, her files (the real clips of CLIPS)."""
    ensure_accounts()
    vol = person_folder(tmp_path / name, "alice")
    (vol / GOPRO).mkdir(parents=True)
    for clip, src in CLIPS.items():
        shutil.copy(src, vol / GOPRO / clip)
    for dirpath, _dirs, files in os.walk(vol):
        for entry in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
            shutil.chown(entry, "alice", "alice")
    return vol


def _owned(path: Path, owner: str, mode: int, group: str | None = None) -> Path:
    shutil.chown(path, owner, group or owner)
    path.chmod(mode)
    return path


def _archive_state(arch: Path) -> dict[str, object]:
    """What the archive holds: its objects, ledger, segments, findings and access log (read as root)."""
    objects = sorted(str(p.relative_to(arch)) for p in (arch / "objects").rglob("*") if p.is_file())
    return {
        "objects": objects,
        "ledger": catalog_rows(arch, "SELECT seq, entry FROM ledger ORDER BY seq"),
        "segments": catalog_rows(arch, "SELECT id, original_name, sha256 FROM segments ORDER BY id"),
        "findings": catalog_rows(arch, "SELECT count(*) FROM findings"),
        "access_log": catalog_rows(arch, "SELECT count(*) FROM access_log"),
        "checkpoints": sorted(p.name for p in (arch / "ledger" / "checkpoints").iterdir()),
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ingest_as_alice(vol: Path, arch: Path, *more: str, groups: bool = False) -> subprocess.CompletedProcess[bytes]:
    """``custodes ingest VOL --archive ARCH --json MORE`` as alice through the service; ``groups``: her process
    holds her supplementary groups (a login's), where helpers.as_account clears them."""
    if not groups:
        return run_cli("ingest", vol, "--archive", arch, "--json", *more, user="alice")
    serve(arch)
    ensure_accounts()
    return subprocess.run(
        ["setpriv", "--reuid=alice", "--regid=alice", "--init-groups", *account_python()]
        + ["ingest", str(vol), "--archive", str(arch), "--json", *more],
        cwd=arch.parent,
        capture_output=True,
        timeout=300,
        env={**os.environ, "HOME": "/"},
    )


@pytest.fixture
def fresh_archive(make_cli_archive: Callable[..., Path]) -> Path:
    """An archive with the custody people (alice is its custodian) and no recordings yet."""
    return make_cli_archive("served")


def test_a_clip_only_the_service_can_read_is_refused_and_nothing_of_it_enters(
    fresh_archive: Path, tmp_path: Path
) -> None:
    vol = _card(tmp_path)
    secret = vol / GOPRO / "GH010003.MP4"
    shutil.copy(SECRET, secret)
    _owned(secret, SERVICE_ACCOUNT, 0o600)  # on her card, but only the service's account may read it
    serve(fresh_archive)
    before = _archive_state(fresh_archive)
    out = _ingest_as_alice(vol, fresh_archive)
    line = one_line_error(
        out, f"{GOPRO}/GH010003.MP4: you \\(alice\\) cannot read it: owner {SERVICE_ACCOUNT}, mode 0600"
    )
    assert REFUSED in line and out.stdout == b""
    assert _archive_state(fresh_archive) == before  # no object, no ledger entry, no row, no checkpoint
    assert _sha256(SECRET) not in str(before)
    # Hers to read (and the service's, which still reads by name), the same card ingests whole: the refusal was
    # about her rights, and only them.
    _owned(secret, "alice", 0o644)
    out = _ingest_as_alice(vol, fresh_archive)
    assert out.returncode in (0, 1), out.stderr
    assert sorted(json.loads(out.stdout)["stored"]) == sorted(
        [f"{GOPRO}/{c}" for c in CLIPS] + [f"{GOPRO}/GH010003.MP4"]
    )
    assert (_sha256(SECRET),) in [(sha,) for _id, _name, sha in _archive_state(fresh_archive)["segments"]]


def test_a_subfolder_of_another_officer_is_refused_without_naming_what_is_in_it(
    fresh_archive: Path, tmp_path: Path
) -> None:
    vol = _card(tmp_path)
    theirs = vol / "DCIM" / "101GOPRO"
    theirs.mkdir()
    shutil.copy(SECRET, theirs / "GH020001.MP4")
    _owned(theirs / "GH020001.MP4", "bob", 0o644)  # readable in itself: the folder keeps alice out
    _owned(theirs, "bob", 0o700)
    serve(fresh_archive)
    before = _archive_state(fresh_archive)
    out = _ingest_as_alice(vol, fresh_archive)
    line = one_line_error(out, "DCIM/101GOPRO: you \\(alice\\) cannot list and enter it: owner bob, mode 0700")
    assert "GH020001" not in line  # what is inside is not hers to know of
    assert _archive_state(fresh_archive) == before
    # A folder she may list but not enter (r without x) is refused the same.
    theirs.chmod(0o704)
    one_line_error(_ingest_as_alice(vol, fresh_archive), "DCIM/101GOPRO: you \\(alice\\) cannot list and enter it")
    assert _archive_state(fresh_archive) == before


def test_a_volume_the_custodian_can_read_ingests_as_it_does_embedded(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    vol = _card(tmp_path)
    os.symlink("GH010001.MP4", vol / GOPRO / "GH010009.MP4")  # a link inside the card: checked, never followed
    embedded = make_cli_archive("embedded", people=None)
    served = make_cli_archive("served")
    alone = run_cli("ingest", vol, "--archive", embedded, "--json")  # root, the archive's owner, embedded
    through = _ingest_as_alice(vol, served)
    assert through.returncode == alone.returncode, through.stderr
    report, expected = json.loads(through.stdout), json.loads(alone.stdout)
    assert sorted(report["stored"]) == sorted(expected["stored"]) == sorted(f"{GOPRO}/{c}" for c in CLIPS)
    kinds = sorted((f["kind"], f["path"]) for f in report["findings"])
    assert kinds == sorted((f["kind"], f["path"]) for f in expected["findings"])
    assert ("symlink", str(vol / GOPRO / "GH010009.MP4")) in kinds
    assert [
        r[1:] for r in catalog_rows(served, "SELECT id, original_name, sha256 FROM segments ORDER BY original_name")
    ] == [
        r[1:] for r in catalog_rows(embedded, "SELECT id, original_name, sha256 FROM segments ORDER BY original_name")
    ]


def test_a_link_out_of_the_volume_is_refused_before_a_driver_follows_it(fresh_archive: Path, tmp_path: Path) -> None:
    # The gopro driver opens MISC/version.txt by name: through a linked MISC it would read the service's own file.
    private = tmp_path / "svc-private"
    private.mkdir()
    (private / "version.txt").write_text('{"camera type":"HERO5 Black","camera serial number":"SVC-ONLY-7"}')
    _owned(private / "version.txt", SERVICE_ACCOUNT, 0o600)
    _owned(private, SERVICE_ACCOUNT, 0o700)
    vol = _card(tmp_path)
    os.symlink(private, vol / "MISC")
    account = pwd.getpwnam("alice")
    os.lchown(vol / "MISC", account.pw_uid, account.pw_gid)
    serve(fresh_archive)
    before = _archive_state(fresh_archive)
    out = _ingest_as_alice(vol, fresh_archive)
    one_line_error(out, f"MISC: a symbolic link to {private}, outside what the service checked")
    assert b"SVC-ONLY-7" not in out.stdout + out.stderr
    assert _archive_state(fresh_archive) == before


def _swap_once(watched: Path, event: int, path: Path, target: Path) -> threading.Thread:
    """At the first inotify ``event`` on ``watched``, put a link to ``target`` in the place of ``path`` (an
    atomic rename): the caller racing her own ingest, between the service's check and its copy."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_CLOEXEC)
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(watched), event) < 0:
        pytest.skip(f"no inotify here: {os.strerror(ctypes.get_errno())}")

    def swap() -> None:
        os.read(fd, 4096)  # blocks until the event
        link = path.with_name(".swapped")
        os.symlink(target, link)
        os.rename(link, path)
        os.close(fd)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    return thread


_IN_CREATE = 0x100


def test_a_file_swapped_for_a_link_after_the_check_is_not_copied(fresh_archive: Path, tmp_path: Path) -> None:
    private = tmp_path / "svc-private"
    private.mkdir()
    shutil.copy(SECRET, private / "clip.mov")
    _owned(private / "clip.mov", SERVICE_ACCOUNT, 0o600)
    _owned(private, SERVICE_ACCOUNT, 0o700)
    vol = _card(tmp_path)
    serve(fresh_archive)
    # The check passes (the card is all hers), the driver and ingest's own scan see her two clips; one copy at a
    # time, largest first: when the first copy starts (its temp appears in the store's tmp/), the second clip's
    # name is made to lead to a file only the service may read. The copy holds the file it opens to the one
    # the check approved.
    later = vol / GOPRO / "GH010002.MP4"
    # The first copy made long enough (64 MiB of zeros after the clip) that the swap, on a thread of this process,
    # lands before the second copy opens its file however loaded the machine (it once landed after, in a full run).
    with open(vol / GOPRO / "GH010001.MP4", "r+b") as f:
        f.truncate(os.fstat(f.fileno()).st_size + (64 << 20))
    swapper = _swap_once(fresh_archive / "tmp", _IN_CREATE, later, private / "clip.mov")
    out = _ingest_as_alice(vol, fresh_archive, "--workers", "1")
    swapper.join(10)
    assert not swapper.is_alive() and later.is_symlink()
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["stored"] == [f"{GOPRO}/GH010001.MP4"] and report["failed"] == [f"{GOPRO}/GH010002.MP4"]
    (failure,) = [f for f in report["findings"] if f["kind"] == "ingest_failed"]
    assert "not the file the archive service checked you could read" in failure["message"]
    state = _archive_state(fresh_archive)
    assert _sha256(SECRET) not in str(state) and len(state["segments"]) == 1


def test_a_group_counts_only_when_the_callers_process_holds_it(fresh_archive: Path, tmp_path: Path) -> None:
    vol = _card(tmp_path)
    shared = vol / GOPRO / "GH010003.MP4"
    shutil.copy(SECRET, shared)
    with _group_of("alice") as group:
        _owned(shared, SERVICE_ACCOUNT, 0o640, group)  # the service's clip, shared with the group alice is in
        serve(fresh_archive)
        before = _archive_state(fresh_archive)
        # Her process without its supplementary groups (setpriv --clear-groups): the kernel would not let it read
        # the clip, and neither does the service, whatever the group database says of her account.
        out = _ingest_as_alice(vol, fresh_archive)
        one_line_error(
            out, f"{GOPRO}/GH010003.MP4: you \\(alice\\) cannot read it: owner {SERVICE_ACCOUNT}, mode 0640: its others"
        )
        assert _archive_state(fresh_archive) == before
        out = _ingest_as_alice(vol, fresh_archive, groups=True)  # as a login gives them: the group is hers
        assert out.returncode in (0, 1), out.stderr
        assert f"{GOPRO}/GH010003.MP4" in json.loads(out.stdout)["stored"]


def _acl(*entries: tuple[int, int, int]) -> bytes:
    """A system.posix_acl_access value (<linux/posix_acl_xattr.h>): version 2, then (tag, perm, id) entries."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


_ANY = 0xFFFFFFFF  # ACL_UNDEFINED_ID: the owner's, owning group's, mask and other entries name no id


def _kernel_lets_alice_read(path: Path) -> bool:
    """The kernel's own answer: alice's process (no supplementary groups) opens the file for reading."""
    ensure_accounts()
    probe = subprocess.run(
        ["setpriv", "--reuid=alice", "--regid=alice", "--clear-groups", "head", "-c", "1", str(path)],
        capture_output=True,
    )
    return probe.returncode == 0


def test_a_posix_acl_is_decided_as_the_kernel_decides_it(fresh_archive: Path, tmp_path: Path) -> None:
    vol = _card(tmp_path)  # makes the accounts
    alice = pwd.getpwnam("alice").pw_uid
    clip = vol / GOPRO / "GH010003.MP4"
    shutil.copy(SECRET, clip)
    _owned(clip, SERVICE_ACCOUNT, 0o600)
    serve(fresh_archive)
    masked = _acl((0x01, 6, _ANY), (0x02, 4, alice), (0x04, 0, _ANY), (0x10, 0, _ANY), (0x20, 0, _ANY))
    granted = _acl((0x01, 6, _ANY), (0x02, 4, alice), (0x04, 0, _ANY), (0x10, 4, _ANY), (0x20, 0, _ANY))
    try:
        os.setxattr(clip, "system.posix_acl_access", masked)
    except OSError as e:
        pytest.skip(f"this file system keeps no POSIX ACLs: {e.strerror}")
    # Named in the ACL, but the mask grants nothing: the kernel refuses her, and so does the service.
    assert not _kernel_lets_alice_read(clip)
    before = _archive_state(fresh_archive)
    out = _ingest_as_alice(vol, fresh_archive)
    one_line_error(out, f"{GOPRO}/GH010003.MP4: you \\(alice\\) cannot read it: owner {SERVICE_ACCOUNT}: its POSIX ACL")
    assert _archive_state(fresh_archive) == before
    # The mask lets her entry through: mode 0600 would say no, the ACL says yes, as the kernel does.
    os.setxattr(clip, "system.posix_acl_access", granted)
    assert _kernel_lets_alice_read(clip)
    out = _ingest_as_alice(vol, fresh_archive)
    assert out.returncode in (0, 1), out.stderr
    assert f"{GOPRO}/GH010003.MP4" in json.loads(out.stdout)["stored"]


def test_a_witness_folder_is_read_only_as_far_as_the_caller_could(cli_archive: Path, tmp_path: Path) -> None:
    # Made beforehand for the service's account, which appends to it for alice (as in test_keys).
    witness = shared_witness(tmp_path / "witness", "alice")
    assert run_cli("ledger", "publish", cli_archive, witness, user="alice").returncode == 0
    assert run_cli("verify", cli_archive, "--witness", witness, "-q", user="alice").returncode == 0
    first = min(witness.iterdir(), key=lambda p: int(p.name))
    first.chmod(0o600)  # the service's own file now, for its eyes only
    for command in (("verify",), ("ledger", "verify")):
        out = run_cli(*command, cli_archive, "--witness", witness, user="alice")
        one_line_error(out, f"witness/{first.name}: you \\(alice\\) cannot read it: owner {SERVICE_ACCOUNT}, mode 0600")
    for command in (("verify",), ("ledger", "verify")):  # root could read it: so may the service, for root
        assert run_cli(*command, cli_archive, "--witness", witness, "-q").returncode == 0


def test_publish_writes_only_where_the_caller_could_write(cli_archive: Path, tmp_path: Path) -> None:
    """`ledger publish DIR` through the service writes as the service's account: a folder only that account
    may write (its own) is refused, naming the folder, and nothing is written there."""
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    _owned(theirs, SERVICE_ACCOUNT, 0o755)
    out = run_cli("ledger", "publish", cli_archive, theirs, user="alice")
    one_line_error(out, f"theirs: you \\(alice\\) cannot create files in it: owner {SERVICE_ACCOUNT}, mode 0755")
    assert list(theirs.iterdir()) == []
    assert (
        run_cli("ledger", "publish", cli_archive, shared_witness(tmp_path / "ours", "alice"), user="alice").returncode
        == 0
    )


_FLIPPER = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b, seconds = sys.argv[1].encode(), sys.argv[2].encode(), float(sys.argv[3])
print("flipping", flush=True)
end = time.monotonic() + seconds
while time.monotonic() < end:
    libc.renameat2(-100, a, -100, b, 2)  # RENAME_EXCHANGE: the folder and the link trade places, atomically
"""


def test_publish_writes_into_the_folder_checked_however_its_name_is_swapped(cli_archive: Path, tmp_path: Path) -> None:
    # Found by a hostile review: the folder was checked once, then written by name; a custodian swapping it for
    # a link to a folder only the service may write (renameat2 RENAME_EXCHANGE, in a loop) won within two
    # tries. Now every write goes through the caller's own descriptor of the folder it checked.
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    _owned(theirs, SERVICE_ACCOUNT, 0o755)
    mine = person_folder(tmp_path / "mine", "alice")
    ensure_accounts()
    for round_ in range(8):
        folder, link = mine / f"w{round_}", mine / f"s{round_}"
        shared_witness(folder, "alice")
        link.symlink_to(theirs)
        os.lchown(link, *(pwd.getpwnam("alice")[2:4]))
        flipper = subprocess.Popen(
            [*as_account("alice"), account_python()[0], "-S", "-c", _FLIPPER, str(folder), str(link), "3"],
            stdout=subprocess.PIPE,
        )
        assert flipper.stdout is not None and flipper.stdout.readline() == b"flipping\n"
        out = run_cli("ledger", "publish", cli_archive, folder, user="alice")
        # Published, or refused with one line (the folder changed, or was the link when checked): never a
        # crash (a path that stopped being a link while it was resolved once raised out of the rights check).
        log = cli_archive.parent / "archive.service.log"
        assert out.returncode in (0, 2) and b"Traceback" not in out.stderr, (
            out.stderr,
            log.read_text()[-3000:].replace("\n", " | "),
        )
        flipper.terminate()  # the publish is over: flipping on to the end of its 3 s was 20 s of the suite
        flipper.communicate(timeout=30)
        assert list(theirs.iterdir()) == [], f"round {round_}: the service wrote into a folder alice cannot"


def test_volume_and_timeline_read_as_the_caller_never_through_the_service(fresh_archive: Path, tmp_path: Path) -> None:
    # They take no archive, so the service never runs them (test_service: archive commands only): the caller's
    # own process reads the card, and the kernel keeps the service's clip from it.
    vol = _card(tmp_path)
    secret = vol / GOPRO / "GH010003.MP4"
    shutil.copy(SECRET, secret)
    _owned(secret, SERVICE_ACCOUNT, 0o600)
    serve(fresh_archive)  # running, and of no help to alice here
    for command in (("volume", vol), ("timeline", vol)):
        out = run_cli(*command, "--json", user="alice")
        assert out.returncode == 1, out.stderr
        report = json.loads(out.stdout)
        assert any(f["path"] == str(secret) and f["kind"] == "unreadable" for f in report["findings"]), report
        assert not any(s.get("name") == f"{GOPRO}/GH010003.MP4" and s.get("start") for s in report.get("segments", []))


@contextlib.contextmanager
def _group_of(user: str) -> Iterator[str]:
    """A supplementary group ``user`` is in (made for the test, removed after it)."""
    ensure_accounts()
    group = "custodes-evidence"
    subprocess.run(["groupadd", "--system", group], capture_output=True)  # already there from a run cut short: fine
    subprocess.run(["usermod", "--append", "--groups", group, user], check=True, capture_output=True)
    try:
        yield group
    finally:
        subprocess.run(["gpasswd", "--delete", user, group], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)
