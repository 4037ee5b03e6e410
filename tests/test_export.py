"""Evidence export: bags checked by bagit-python and by custodes, disc images by xorriso."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import bagit
import pytest

import custodes
from helpers import BACKENDS, FOOTAGE, as_, export_as_carol, refused, request, run_cli


def bagit_valid(bag: Path) -> bool:
    out = subprocess.run([sys.executable, "-m", "bagit", "--validate", str(bag)], capture_output=True)
    return out.returncode == 0


@pytest.mark.parametrize("archive_backend", BACKENDS)
def test_export_is_a_valid_self_proving_bag(case_bag: tuple[Path, Path], cli_archive: Path) -> None:
    bag, _ = case_bag
    assert bagit_valid(bag)
    assert bagit.Bag(str(bag)).is_valid()
    out = run_cli("bag", "validate", bag, "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["valid"] and report["version"] == "1.0"
    assert report["files"] == 2 and report["custody_entries_checked"] == 3  # two ingests and the export itself
    info = (bag / "bag-info.txt").read_text()
    for field in (
        "Producer: ",
        "Extractor: carol",
        "Extraction-Date: ",
        "Case-Number: C-7",
        "External-Description: Body camera footage of the stop",
    ):
        assert field in info
    entries = (bag / "custody" / "ledger-entries.jsonl").read_text().splitlines()
    assert len(entries) == 3
    # The fields RFC 8493 reserves, spelt as it spells them (bagit-python reads them by name).
    reserved = bagit.Bag(str(bag)).info
    assert reserved["Bag-Software-Agent"] == f"custodes {custodes.__version__}"
    assert reserved["Payload-Oxum"] == f"{sum(p.stat().st_size for p in (bag / 'data').rglob('*') if p.is_file())}.2"


def test_changed_byte_removed_file_and_altered_proof_fail(case_bag: tuple[Path, Path]) -> None:
    bag, _ = case_bag
    victim = sorted((bag / "data").rglob("*.mp4"))[0]
    original = victim.read_bytes()
    victim.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])
    assert not bagit_valid(bag)
    assert run_cli("bag", "validate", bag).returncode == 1
    victim.write_bytes(original)
    assert bagit_valid(bag) and run_cli("bag", "validate", bag).returncode == 0
    proofs = bag / "custody" / "inclusion-proofs.json"
    saved = proofs.read_text()
    data = json.loads(saved)
    h = data[0]["proof"][0]
    data[0]["proof"][0] = ("0" if h[0] != "0" else "1") + h[1:]
    proofs.write_text(json.dumps(data))
    out = run_cli("bag", "validate", bag)
    assert out.returncode == 1 and b"is not proven in the signed checkpoint" in out.stdout
    assert not bagit_valid(bag)  # the tag manifest covers the custody folder
    proofs.write_text(saved)
    victim.unlink()
    assert not bagit_valid(bag)
    out = run_cli("bag", "validate", bag)
    assert out.returncode == 1 and b"missing" in out.stdout


def test_disc_image_lists_and_extracts_identically(case_bag: tuple[Path, Path], tmp_path: Path) -> None:
    bag, iso = case_bag
    listing = subprocess.run(
        ["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"], capture_output=True, text=True
    )
    names = {line.strip().strip("'") for line in listing.stdout.splitlines() if line.startswith("'")}
    expected = {"/" + p.relative_to(bag).as_posix() for p in bag.rglob("*") if p.is_file()}
    assert names == expected
    out = tmp_path / "extracted"
    subprocess.run(
        ["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", "/", str(out)], check=True, capture_output=True
    )
    for p in bag.rglob("*"):
        if p.is_file():
            assert (
                hashlib.sha256((out / p.relative_to(bag)).read_bytes()).digest()
                == hashlib.sha256(p.read_bytes()).digest()
            )
    assert run_cli("bag", "validate", out).returncode == 0


def test_export_refusals(cli_archive: Path, tmp_path: Path) -> None:
    assert (
        as_("alice", "retention", "case", cli_archive, "--case", "C-8", "--segment", "1", "--segment", "2").returncode
        == 0
    )
    partial = request(cli_archive, "carol", 1, purpose="export")  # segment 2 is not in the approved set
    assert as_("bob", "access", "approve", cli_archive, partial).returncode == 0
    refused(
        as_("carol", "export", cli_archive, "--case", "C-8", "--request", partial, "--to", tmp_path / "b1"),
        r"segment\(s\) \[2\] are not in request",
    )
    view = request(cli_archive, "carol", 1, 2)
    assert as_("bob", "access", "approve", cli_archive, view).returncode == 0
    refused(
        as_("carol", "export", cli_archive, "--case", "C-8", "--request", view, "--to", tmp_path / "b2"),
        "approved for view, not export",
    )
    assert not (tmp_path / "b1").exists() and not (tmp_path / "b2").exists()
    assert (
        as_("carol", "export", cli_archive, "--case", "NOPE", "--request", view, "--to", tmp_path / "b3").returncode
        == 2
    )


def test_validates_bags_made_by_bagit_python(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    (plain).mkdir()
    (plain / "statement.txt").write_text("witness statement\n")
    bagit.make_bag(str(plain), {"Contact-Name": "Custodian"}, checksums=["sha256", "sha512"])
    out = run_cli("bag", "validate", plain, "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["version"] in ("0.97", "1.0") and report["files"] == 1
    (plain / "data" / "statement.txt").write_text("altered\n")
    assert run_cli("bag", "validate", plain).returncode == 1
    out = run_cli("bag", "validate", tmp_path)  # a usage error: the folder given is not a bag
    assert out.returncode == 2
    assert f"{tmp_path}: not a bag (no bagit.txt); give the folder that holds bagit.txt\n" in out.stderr.decode()


def test_sm3_manifest_when_the_policy_records_sm3(make_cli_archive: Callable[..., Path], tmp_path: Path) -> None:
    arch = make_cli_archive(
        init_args=("--algo", "sha256", "--algo", "sm3"),
        recordings={"clip.mp4": FOOTAGE / "encoders" / "androidx-sample.mp4"},
        volume=tmp_path / "BWC0002",
        ingest_exit=(1,),  # late_ingest (2016 footage)
    )
    assert as_("alice", "retention", "case", arch, "--case", "C-9", "--segment", "1").returncode == 0
    rid = request(arch, "carol", 1, purpose="export")
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    bag = tmp_path / "bag"
    assert as_("carol", "export", arch, "--case", "C-9", "--request", rid, "--to", bag).returncode == 0
    sm3_line = (bag / "manifest-sm3.txt").read_text().split()
    expected = subprocess.run(
        ["openssl", "dgst", "-sm3", "-r", str(FOOTAGE / "encoders" / "androidx-sample.mp4")],
        capture_output=True,
        text=True,
    ).stdout.split()[0]
    assert sm3_line == [expected, "data/BWC0002/clip.mp4"]
    assert run_cli("bag", "validate", bag).returncode == 0
    out = subprocess.run([sys.executable, "-m", "bagit", "--validate", str(bag)], capture_output=True, text=True)
    assert out.returncode == 0  # bagit-python checks the sha256 manifest and tolerates the sm3 one


def test_a_recording_from_a_nested_folder_keeps_its_folders_in_the_bag(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    # A card's recordings sit in folders (DCIM/100MEDIA/...): the bag keeps them under data/<device>/, folders
    # made as needed (a mutmut survivor: no test exported a recording from below the volume's top).
    src = FOOTAGE / "encoders" / "androidx-sample.mp4"
    arch = make_cli_archive(recordings={"DCIM/100MEDIA/clip.mp4": src}, ingest_exit=(1,))  # late_ingest
    bag = tmp_path / "bag"
    out = export_as_carol(arch, "C-2", [1], bag)
    assert out.returncode == 0, out.stderr
    assert (bag / "data" / "BWC0001" / "DCIM" / "100MEDIA" / "clip.mp4").read_bytes() == src.read_bytes()
    assert bagit_valid(bag) and run_cli("bag", "validate", bag).returncode == 0


def test_two_names_that_become_one_bag_path_are_both_exported(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    # Found by a hostile user: `a\b.mp4` (a backslash, kept escaped) and `a__b.mp4` made the same bag path;
    # the second copy overwrote the first and export called the archive's object corrupt.
    clips = {"a\\b.mp4": FOOTAGE / "encoders" / "go-mp4-sample.mp4", "a__b.mp4": FOOTAGE / "gopro" / "karma.mp4"}
    arch = make_cli_archive(recordings=clips, ingest_exit=(0, 1))
    bag = tmp_path / "bag"
    out = export_as_carol(arch, "C-1", [1, 2], bag)
    assert out.returncode == 0, out.stderr
    files = sorted(p.relative_to(bag / "data").as_posix() for p in (bag / "data").rglob("*") if p.is_file())
    assert len(files) == 2 and files[0] != files[1]
    digests = {hashlib.sha256((bag / "data" / f).read_bytes()).hexdigest() for f in files}
    assert digests == {hashlib.sha256(p.read_bytes()).hexdigest() for p in clips.values()}
    assert bagit_valid(bag) and run_cli("bag", "validate", bag).returncode == 0


def test_names_too_long_for_a_bag_once_told_apart_are_shortened_not_refused(
    make_cli_archive: Callable[..., Path], tmp_path: Path
) -> None:
    """Two recordings of 255-byte names that become one bag path: the second's `.segN` made a name the file
    system refuses, and the case could never be exported ("File name too long"; a hostile review). A name over
    255 bytes keeps its start and extension with a hash of the whole between; the bag validates with both tools."""
    long = "L" * 247
    clips = {
        f"{long}a\\b.mp4": FOOTAGE / "encoders" / "go-mp4-sample.mp4",
        f"{long}a__b.mp4": FOOTAGE / "gopro" / "karma.mp4",
    }
    arch = make_cli_archive(recordings=clips, ingest_exit=(0, 1))
    bag = tmp_path / "bag"
    out = export_as_carol(arch, "C-1", [1, 2], bag)
    assert out.returncode == 0, out.stderr
    files = sorted(p.relative_to(bag / "data").as_posix() for p in (bag / "data").rglob("*") if p.is_file())
    assert len(files) == 2 and all(len(f.split("/")[-1].encode()) <= 255 for f in files)
    assert files[0].endswith(f"/{long}a__b.mp4")  # a name that fits is as it always was
    assert files[1].endswith(".mp4") and "~" in files[1].split("/")[-1]
    digests = {hashlib.sha256((bag / "data" / f).read_bytes()).hexdigest() for f in files}
    assert digests == {hashlib.sha256(p.read_bytes()).hexdigest() for p in clips.values()}
    assert bagit_valid(bag) and run_cli("bag", "validate", bag).returncode == 0
