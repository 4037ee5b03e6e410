"""`custodes hash` speaks the language of sha256sum and b3sum, both ways."""

from __future__ import annotations

import json
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import FOOTAGE, peer, run_cli


@pytest.fixture
def nested_volume(tmp_path: Path) -> Path:
    """A small device volume: real clips in nested folders, names in byte order tricks."""
    vol = tmp_path / "vol"
    (vol / "DCIM" / "100GOPRO").mkdir(parents=True)
    (vol / "RECORD").mkdir()
    shutil.copy(FOOTAGE / "gopro" / "karma.mp4", vol / "DCIM" / "100GOPRO" / "GH010001.MP4")
    shutil.copy(FOOTAGE / "phones" / "bt601.mov", vol / "RECORD" / "b.mov")
    shutil.copy(FOOTAGE / "encoders" / "go-mp4-sample.mp4", vol / "RECORD" / "B.mp4")
    shutil.copy(FOOTAGE / "encoders" / "androidx-sample.mp4", vol / "RECORD" / "执法仪_0001.mp4")
    return vol


def sorted_files(root: Path) -> list[bytes]:
    """The walk order custodes promises: byte order within each folder, depth first."""
    out: list[bytes] = []
    for entry in sorted(os.scandir(root), key=lambda e: os.fsencode(e.name)):
        out += sorted_files(Path(entry.path)) if entry.is_dir() else [os.fsencode(entry.path)]
    return out


@pytest.mark.parametrize(("algo", "tool"), [("sha256", "sha256sum"), ("blake3", "b3sum"), ("md5", "md5sum")])
def test_output_is_byte_identical_to_the_peer_tool(nested_volume: Path, algo: str, tool: str) -> None:
    out = run_cli("hash", "--algo", algo, nested_volume)
    assert out.returncode == 0, out.stderr
    files = [os.fsdecode(p) for p in sorted_files(nested_volume)]
    assert len(files) == 4
    assert out.stdout == peer(tool, *files).stdout


@pytest.mark.parametrize(("algo", "tool"), [("sha256", "sha256sum"), ("blake3", "b3sum"), ("md5", "md5sum")])
def test_names_with_a_carriage_return_are_written_as_each_peer_writes_them(
    tmp_path: Path, algo: str, tool: str
) -> None:
    """b3sum leaves a carriage return in a name as it is (and its --check refuses ``\\r``), sha256sum and md5sum
    escape it (a hostile review: custodes' blake3 lines escaped it, and `b3sum -c` stopped at the first one)."""
    folder = tmp_path / "odd"
    folder.mkdir()
    for name in ("cr\rhere.mp4", "nl\nhere.mp4", "back\\slash.mp4", "plain.mp4"):
        (folder / name).write_bytes(name.encode())
    files = sorted(os.fsdecode(p) for p in sorted_files(folder))
    out = run_cli("hash", "--algo", algo, folder)
    assert out.returncode == 0, out.stderr
    assert out.stdout == peer(tool, *files).stdout
    listing = tmp_path / "list.txt"
    listing.write_bytes(out.stdout)
    checked = peer(tool, "--check", listing)
    assert checked.returncode == 0 and checked.stdout.decode().count(": OK") == 4, checked.stderr


def test_peer_tools_check_our_lists(nested_volume: Path, tmp_path: Path) -> None:
    for algo, tool in (("sha256", "sha256sum"), ("blake3", "b3sum")):
        listing = tmp_path / f"{algo}.txt"
        listing.write_bytes(run_cli("hash", "--algo", algo, nested_volume).stdout)
        checked = peer(tool, "--check", listing)
        assert checked.returncode == 0, checked.stderr
        assert checked.stdout.decode().count(": OK") == 4


def test_we_check_lists_written_by_peer_tools(nested_volume: Path, tmp_path: Path) -> None:
    files = [os.fsdecode(p) for p in sorted_files(nested_volume)]
    for algo, tool_args in (
        ("sha256", ["sha256sum"]),
        ("sha256", ["sha256sum", "--tag"]),
        ("blake3", ["b3sum"]),
        ("md5", ["md5sum", "--tag"]),
    ):
        listing = tmp_path / "list.txt"
        listing.write_bytes(peer(*tool_args, *files).stdout)
        out = run_cli("hash", "--check", listing, "--algo", algo)
        assert out.returncode == 0, (tool_args, out.stderr)
        assert out.stdout.decode().splitlines() == [f"{f}: OK" for f in files]


def test_check_reports_modified_and_missing_like_sha256sum(nested_volume: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_bytes(run_cli("hash", nested_volume).stdout)
    files = [os.fsdecode(p) for p in sorted_files(nested_volume)]
    with open(files[1], "r+b") as f:  # one bit flipped in the middle of a clip
        f.seek(5000)
        b = f.read(1)
        f.seek(5000)
        f.write(bytes([b[0] ^ 1]))
    os.unlink(files[2])
    ours = run_cli("hash", "--check", listing)
    theirs = peer("sha256sum", "--check", listing)
    assert ours.returncode == 1 and theirs.returncode == 1
    assert ours.stdout == theirs.stdout  # "path: OK", "path: FAILED", "path: FAILED open or read"
    assert "1 computed checksum(s) did NOT match" in ours.stderr.decode()
    assert "1 listed file(s) could not be read" in ours.stderr.decode()
    report = json.loads(run_cli("hash", "--check", listing, "--json").stdout)
    assert report["ok"] is False
    assert [f["status"] for f in report["files"]] == ["ok", "failed", "missing", "ok"]
    assert (report["checked"], report["matched"], report["failed"], report["missing"]) == (4, 2, 1, 1)


def test_check_from_stdin(nested_volume: Path) -> None:
    listing = run_cli("hash", "--algo", "sm3", nested_volume).stdout
    out = run_cli("hash", "--check", "-", "--algo", "sm3", input=listing)
    assert out.returncode == 0 and out.stdout.count(b": OK") == 4


def test_names_with_newline_and_backslash_round_trip(tmp_path: Path) -> None:
    odd = tmp_path / "line\nbreak\\back.mp4"
    shutil.copy(FOOTAGE / "encoders" / "go-mp4-sample.mp4", odd)
    ours = run_cli("hash", odd)
    assert ours.returncode == 0
    assert ours.stdout == peer("sha256sum", odd).stdout  # leading "\", escaped name
    listing = tmp_path / "list.txt"
    listing.write_bytes(ours.stdout)
    assert peer("sha256sum", "-c", listing).returncode == 0
    assert run_cli("hash", "-c", listing).returncode == 0


def test_several_algorithms_give_bsd_tag_lines(nested_volume: Path) -> None:
    clip = nested_volume / "RECORD" / "b.mov"
    out = run_cli("hash", "--algo", "sha256", "--algo", "md5", clip)
    assert out.returncode == 0
    assert out.stdout == peer("sha256sum", "--tag", clip).stdout + peer("md5sum", "--tag", clip).stdout


def test_json_output(nested_volume: Path) -> None:
    raw = os.path.join(os.fsencode(nested_volume), b"\xff.mp4")
    shutil.copy(FOOTAGE / "encoders" / "go-mp4-sample.mp4", raw)
    out = run_cli("hash", "--json", "--algo", "sha256", "--algo", "blake3", nested_volume)
    assert out.returncode == 0
    report = json.loads(out.stdout)
    assert report["ok"] is True and report["algorithms"] == ["sha256", "blake3"]
    by_path = {os.fsencode(f["path"]): f for f in report["files"]}
    assert set(by_path) == set(sorted_files(nested_volume))
    expected = peer("b3sum", os.fsdecode(raw)).stdout.split()[0].decode()
    assert by_path[raw]["digests"]["blake3"] == expected
    assert by_path[raw]["size"] == os.path.getsize(raw)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--check", "/nonexistent/list.txt"],
        ["--algo", "sha1", "."],
        ["--check", "LIST", "extra-path"],
        ["--check", "LIST", "--algo", "sha256", "--algo", "md5"],
        ["--workers", "0", "."],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "LIST").write_text("0" * 64 + "  x\n")
    out = run_cli("hash", *args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr  # says what is wrong


def test_list_with_no_usable_line_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "b3.txt").write_text("not a checksum line\n")
    out = run_cli("hash", "--check", tmp_path / "b3.txt")
    assert out.returncode == 2
    assert "no properly formatted sha256 checksum lines" in out.stderr.decode()


def test_malformed_lines_are_reported_and_fail_the_check(nested_volume: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_bytes(run_cli("hash", nested_volume).stdout + b"garbage line\n")
    out = run_cli("hash", "--check", listing)
    assert out.returncode == 1
    assert out.stdout.count(b": OK") == 4
    assert f"{listing}: 5: improperly formatted checksum line" in out.stderr.decode()


def test_version_and_help() -> None:
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.decode().startswith("custodes, version ")
    assert b"sha256sum" in run_cli("hash", "--help").stdout


def test_progress_is_silent_when_piped_and_shown_on_a_terminal(tmp_path: Path) -> None:
    big = tmp_path / "long-shift.mp4"
    with open(big, "wb") as f:
        f.truncate(768 << 20)
    piped = run_cli("hash", "--algo", "sm3", big)
    assert piped.returncode == 0 and piped.stderr == b""
    # On a terminal: stderr is a pty; progress shows throughput and time left.
    leader, follower = pty.openpty()
    proc = subprocess.run(
        [sys.executable, "-m", "custodes", "hash", "--algo", "sm3", str(big)],
        stdout=subprocess.PIPE,
        stderr=follower,
        timeout=300,
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert proc.returncode == 0 and proc.stdout == piped.stdout
    assert b"/s" in shown and b"ETA" in shown and b"(0/1 files)" in shown
    quiet = subprocess.run(
        [sys.executable, "-m", "custodes", "hash", "-q", "--algo", "sm3", str(big)],
        capture_output=True,
        timeout=300,
    )
    assert quiet.stderr == b""


def test_lines_between_errors_are_sha256sums_own(tmp_path: Path) -> None:
    """The lines are written straight from the engine's digests (issue 14): plain, escaped and non-UTF-8
    names between files that cannot be hashed give sha256sum's bytes, in walk order, each error on stderr."""
    vol = tmp_path / "vol"
    vol.mkdir()
    clip = FOOTAGE / "encoders" / "go-mp4-sample.mp4"
    names = [b"a.mp4", b"b\nline.mp4", b"c\\back.mp4", b"d\xff.mp4", b"f.mp4"]
    for name in names:
        shutil.copy(clip, os.path.join(os.fsencode(vol), name))
    os.symlink(vol / "missing", vol / "b0-dangling")  # an error after the first line
    (vol / "e-folder").mkdir()
    os.symlink(vol / "e-folder", vol / "e-link")  # a symlink to a folder: not followed, an error in the walk
    out = run_cli("hash", vol)
    assert out.returncode == 1
    readable = [os.fsdecode(os.path.join(os.fsencode(vol), n)) for n in names]
    assert out.stdout == peer("sha256sum", *readable).stdout
    assert b"b0-dangling" in out.stderr and b"e-link" in out.stderr
