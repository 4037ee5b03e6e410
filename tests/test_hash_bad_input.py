"""Bad input: each case is a clear per-file error (or, where the input is
valid but unusual, a correct digest); the rest of the batch is still hashed
and the CLI exits 1."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import custodes
from helpers import FOOTAGE, nested_folders, peer, run_cli

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
NON_UTF8 = b"\xff\xfeclip-\xe4\xb8.mp4"  # Latin-1 bytes, invalid as UTF-8


@pytest.fixture
def good_files_dir(tmp_path: Path) -> Path:
    shutil.copy(FOOTAGE / "encoders" / "go-mp4-sample.mp4", tmp_path / "a-good.mp4")
    shutil.copy(FOOTAGE / "phones" / "bt601.mov", tmp_path / "z-good.mov")
    return tmp_path


def test_dangling_symlink(good_files_dir: Path) -> None:
    (good_files_dir / "dangling.mp4").symlink_to(good_files_dir / "gone.mp4")
    good, dangling, good2 = custodes.hash_files(
        [good_files_dir / "a-good.mp4", good_files_dir / "dangling.mp4", good_files_dir / "z-good.mov"]
    )
    assert good.ok and good2.ok
    assert isinstance(dangling.error, custodes.EvidenceNotFoundError)
    assert isinstance(dangling.error, FileNotFoundError)
    assert dangling.error.filename == str(good_files_dir / "dangling.mp4")
    assert "no such file" in str(dangling.error)


def test_symlink_loop(good_files_dir: Path) -> None:
    (good_files_dir / "loop1").symlink_to(good_files_dir / "loop2")
    (good_files_dir / "loop2").symlink_to(good_files_dir / "loop1")
    (r,) = custodes.hash_files([good_files_dir / "loop1"])
    assert isinstance(r.error, custodes.SymlinkLoopError)
    assert "symlink loop" in str(r.error)


def test_directory_where_a_file_was_expected(good_files_dir: Path) -> None:
    sub = good_files_dir / "DCIM"
    sub.mkdir()
    d, good = custodes.hash_files([sub, good_files_dir / "a-good.mp4"])
    assert isinstance(d.error, custodes.NotRegularFileError)
    assert "directory" in str(d.error)
    assert good.ok


def test_fifo_does_not_hang(good_files_dir: Path) -> None:
    os.mkfifo(good_files_dir / "pipe.mp4")
    (r,) = custodes.hash_files([good_files_dir / "pipe.mp4"])
    assert isinstance(r.error, custodes.NotRegularFileError)
    assert "FIFO" in str(r.error)


def test_zero_byte_file_has_the_empty_digest(good_files_dir: Path) -> None:
    (good_files_dir / "empty.mp4").write_bytes(b"")
    (r,) = custodes.hash_files([good_files_dir / "empty.mp4"], ("sha256", "blake3"))
    assert r.ok and r.size == 0
    assert r.digests["sha256"] == EMPTY_SHA256
    assert r.digests["blake3"] == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"


def test_non_utf8_name_is_hashed_and_printed_as_sha256sum_does(good_files_dir: Path) -> None:
    raw = os.path.join(os.fsencode(good_files_dir), NON_UTF8)
    shutil.copy(good_files_dir / "a-good.mp4", raw)
    (r,) = custodes.hash_files([os.fsdecode(raw)])
    assert r.ok and os.fsencode(r.path) == raw
    out = run_cli("hash", os.fsdecode(raw))
    assert out.returncode == 0
    assert out.stdout == peer("sha256sum", os.fsdecode(raw)).stdout


def test_unreadable_file(good_files_dir: Path) -> None:
    secret = good_files_dir / "secret.mp4"
    shutil.copy(good_files_dir / "a-good.mp4", secret)
    secret.chmod(0)
    out = run_cli("hash", good_files_dir, obey_permissions=True)
    assert out.returncode == 1
    lines = out.stdout.decode().splitlines()
    assert [line.split("  ")[1] for line in lines] == [
        str(good_files_dir / "a-good.mp4"),
        str(good_files_dir / "z-good.mov"),
    ]
    assert f"{secret}: permission denied" in out.stderr.decode()


def test_unreadable_file_named_on_the_command_line(good_files_dir: Path) -> None:
    # Found by a hostile user: click's readable check made it a usage error (exit 2) that hashed nothing, where
    # the README says a file it cannot read is reported and the run goes on with exit 1.
    secret = good_files_dir / "secret.mp4"
    shutil.copy(good_files_dir / "a-good.mp4", secret)
    secret.chmod(0)
    out = run_cli("hash", "--json", good_files_dir / "a-good.mp4", secret, obey_permissions=True)
    assert out.returncode == 1, out.stderr
    files = json.loads(out.stdout)["files"]
    assert [(f["path"], f["error"] is None) for f in files] == [
        (str(good_files_dir / "a-good.mp4"), True),
        (str(secret), False),
    ]
    assert files[0]["digests"]["sha256"] == peer("sha256sum", good_files_dir / "a-good.mp4").stdout.decode()[:64]
    assert files[1]["error"] == {"kind": "permission_denied", "message": f"{secret}: permission denied"}


def test_file_truncated_while_hashed(tmp_path: Path) -> None:
    big = tmp_path / "power-loss.mp4"
    with open(big, "wb") as f:
        f.truncate(512 << 20)  # sparse: reads fast, hashes slowly enough with sm3
    shrunk = False

    def shrink_once(p: custodes.HashProgress) -> None:
        nonlocal shrunk
        if p.bytes_done and not shrunk:
            os.truncate(big, 1 << 20)
            shrunk = True

    other = tmp_path / "other.mp4"
    other.write_bytes(b"still hashed")
    r, o = custodes.hash_files([big, other], ("sm3",), progress=shrink_once, progress_interval=0.02)
    assert shrunk
    assert isinstance(r.error, custodes.ChangedWhileReadingError)
    assert "changed size while being read" in str(r.error) and str(512 << 20) in str(r.error)
    assert o.ok


def test_file_growing_while_hashed(tmp_path: Path) -> None:
    big = tmp_path / "still-recording.mp4"
    with open(big, "wb") as f:
        f.truncate(256 << 20)
    grown = False

    def grow_once(p: custodes.HashProgress) -> None:
        nonlocal grown
        if p.bytes_done and not grown:
            with open(big, "ab") as f:
                f.write(b"more footage")
            grown = True

    (r,) = custodes.hash_files([big], ("sm3",), progress=grow_once, progress_interval=0.02)
    assert grown and isinstance(r.error, custodes.ChangedWhileReadingError)


def test_cli_mixed_batch_hashes_the_rest_and_exits_1(good_files_dir: Path) -> None:
    (good_files_dir / "b-dangling.mp4").symlink_to(good_files_dir / "nowhere")
    (good_files_dir / "c-loop").symlink_to(good_files_dir / "c-loop")
    os.mkfifo(good_files_dir / "d-fifo")
    (good_files_dir / "e-empty.mp4").write_bytes(b"")
    (good_files_dir / "f-link-to-folder").symlink_to("/etc")
    out = run_cli("hash", good_files_dir)
    assert out.returncode == 1
    stdout = out.stdout.decode()
    stderr = out.stderr.decode()
    files = [good_files_dir / n for n in ("a-good.mp4", "e-empty.mp4", "z-good.mov")]
    assert stdout == peer("sha256sum", *files).stdout.decode()
    assert f"{good_files_dir / 'b-dangling.mp4'}: no such file" in stderr
    assert f"{good_files_dir / 'c-loop'}: too many levels of symbolic links" in stderr
    assert f"{good_files_dir / 'd-fifo'}: not a regular file: named pipe (FIFO)" in stderr
    assert f"{good_files_dir / 'f-link-to-folder'}: symlink to a folder, not followed" in stderr
    assert "/etc/" not in stdout  # the walk never leaves the volume through a link


def test_missing_path_on_command_line(good_files_dir: Path) -> None:
    out = run_cli("hash", good_files_dir / "a-good.mp4", good_files_dir / "nope.mp4")
    assert out.returncode == 1
    assert out.stdout.decode().startswith(peer("sha256sum", good_files_dir / "a-good.mp4").stdout.decode()[:64])
    assert "nope.mp4: no such file" in out.stderr.decode()


def test_unlistable_folder_is_reported(good_files_dir: Path) -> None:
    locked = good_files_dir / "locked"
    locked.mkdir()
    (locked / "x.mp4").write_bytes(b"x")
    locked.chmod(stat.S_IWUSR)
    out = run_cli("hash", good_files_dir, obey_permissions=True)
    locked.chmod(0o755)
    assert out.returncode == 1
    assert f"{locked}: cannot list folder" in out.stderr.decode()
    assert len(out.stdout.splitlines()) == 2


def test_a_tree_nested_past_python_s_recursion_is_walked(tmp_path: Path) -> None:
    """1,200 nested folders (a hostile review: the walk was recursive and died with a RecursionError, printing
    nothing); the deepest file's line is sha256sum's, and a folder nested past PATH_MAX is named, not skipped."""
    top = tmp_path / "deep"
    top.mkdir()

    def clip_at_1200(level: int, fd: int) -> None:
        if level == 1200:
            with open(os.open("clip.mp4", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd), "wb") as f:
                f.write((FOOTAGE / "encoders" / "go-mp4-sample.mp4").read_bytes())

    nested_folders(top, 2100, clip_at_1200)
    try:
        out = run_cli("hash", top, timeout=120)
        text = out.stderr.decode()
        assert out.returncode == 1 and "Traceback" not in text, text
        (line,) = out.stdout.decode().splitlines()
        digest, name = line.split("  ", 1)
        assert name == str(top) + "/a" * 1200 + "/clip.mp4"
        assert digest == peer("sha256sum", FOOTAGE / "encoders" / "go-mp4-sample.mp4").stdout.split()[0].decode()
        assert "cannot list folder" in text and "name too long" in text.lower(), text
    finally:
        subprocess.run(["rm", "-rf", str(top)], check=True)  # shutil.rmtree recurses as the walk did
