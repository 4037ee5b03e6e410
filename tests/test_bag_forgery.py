"""Bags proven against their payload (issue 13, item 5).

A forger who regenerates the manifests, Payload-Oxum and tag manifest makes any change look valid to BagIt
alone (bagit-python says so below); `custodes bag validate` holds the payload to the bag's proven export entry
instead: exactly the recordings it lists, each with its ingest entry's digest, no other file, no link. And export
itself: its ledger entry is written only for a bag that is complete and checked, a failure is ledgered as
``export_failed`` with no half bag left, targets through a link are refused, and an unsafe device id stays inside
data/.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from custodes.archive import ArchiveError, open_archive
from custodes.export import export_case
from helpers import (
    FOOTAGE,
    as_,
    catalog_rows,
    copy_archive,
    hand_back,
    one_line_error,
    person_folder,
    request,
    run_cli,
    run_cli_with_faults,
)


def validate(bag: Path) -> tuple[int, list[str]]:
    """`custodes bag validate BAG`: exit code and the problem lines (never a traceback)."""
    out = run_cli("bag", "validate", bag)
    assert b"Traceback" not in out.stderr and b"Traceback" not in out.stdout, out.stderr
    return out.returncode, [
        line[len("invalid: ") :] for line in out.stdout.decode().splitlines() if line.startswith("invalid: ")
    ]


def bagit_python_valid(bag: Path) -> bool:
    return subprocess.run([sys.executable, "-m", "bagit", "--validate", str(bag)], capture_output=True).returncode == 0


def only_problem_after_rebag(bag: Path) -> str:
    """The forger's rebag, which satisfies BagIt alone; then the one problem `bag validate` names (exit 1)."""
    rebag(bag)
    assert bagit_python_valid(bag)  # BagIt alone is satisfied
    rc, problems = validate(bag)
    assert rc == 1 and len(problems) == 1, problems
    return problems[0]


def rebag(bag: Path) -> None:
    """What a forger does after changing the payload: manifest-sha256.txt, Payload-Oxum and the tag manifest
    regenerated from the files as they now are (links followed, as a careless tool would)."""
    files = sorted(p for p in (bag / "data").rglob("*") if p.is_file())
    (bag / "manifest-sha256.txt").write_text(
        "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(bag).as_posix()}\n" for p in files)
    )
    info = bag / "bag-info.txt"
    oxum = f"{sum(p.stat().st_size for p in files)}.{len(files)}"
    info.write_text(
        "".join(
            f"Payload-Oxum: {oxum}\n" if line.startswith("Payload-Oxum:") else line + "\n"
            for line in info.read_text().splitlines()
        )
    )
    rebag_tags(bag)


def rebag_tags(bag: Path) -> None:
    """The tag manifest regenerated from the tag files as they now are."""
    tags = sorted(
        p
        for p in bag.rglob("*")
        if p.is_file() and p.relative_to(bag).parts[0] != "data" and "tagmanifest" not in p.name
    )
    (bag / "tagmanifest-sha256.txt").write_text(
        "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(bag).as_posix()}\n" for p in tags)
    )


def ledger_entries(arch: Path) -> list[dict]:
    return [json.loads(bytes(e)) for (e,) in catalog_rows(arch, "SELECT entry FROM ledger ORDER BY seq")]


def ingest_index(bag: Path, name: str) -> int:
    """The ledger index of the ingest entry of the recording called ``name``, among the bag's custody entries."""
    (index,) = [
        line["index"]
        for line in map(json.loads, (bag / "custody" / "ledger-entries.jsonl").read_text().splitlines())
        if (entry := json.loads(base64.b64decode(line["entry"])))["type"] == "ingest" and entry.get("name") == name
    ]
    return index


def export_index(bag: Path) -> int:
    """The ledger index of the bag's export entry (the last custody entry)."""
    return max(
        json.loads(line)["index"] for line in (bag / "custody" / "ledger-entries.jsonl").read_text().splitlines()
    )


# --- bag validate: the payload is what the export entry lists ------------------------------------------------------


def test_a_planted_file_in_data_is_named(case_bag: tuple[Path, Path]) -> None:
    bag, _ = case_bag
    (bag / "data" / "BWC0001" / "planted.mp4").write_bytes((FOOTAGE / "gopro" / "karma.mp4").read_bytes())
    assert only_problem_after_rebag(bag) == (
        f"data/BWC0001/planted.mp4: is not a recording export entry {export_index(bag)} lists "
        "(a file added to the payload)"
    )


def test_a_bag_rewritten_with_another_manifest_proves_no_recording(case_bag: tuple[Path, Path]) -> None:
    # A forger who swaps manifest-sha256.txt for a SHA-512 one has a bag BagIt accepts, and no payload file is
    # then held to the SHA-256 its ingest entry recorded: each recording is named, none taken as proven.
    bag, _ = case_bag
    files = sorted(p for p in (bag / "data").rglob("*") if p.is_file())
    (bag / "manifest-sha512.txt").write_text(
        "".join(f"{hashlib.sha512(p.read_bytes()).hexdigest()}  {p.relative_to(bag).as_posix()}\n" for p in files)
    )
    (bag / "manifest-sha256.txt").unlink()
    rebag_tags(bag)
    assert bagit_python_valid(bag)
    rc, problems = validate(bag)
    assert rc == 1
    assert sorted(problems) == sorted(
        f"{p.relative_to(bag).as_posix()}: does not have the digest its ingest entry {ingest_index(bag, p.name)} "
        "recorded"
        for p in files
    )


def test_a_planted_file_whose_name_is_not_utf8_is_named_in_escapes(case_bag: tuple[Path, Path]) -> None:
    # A name of raw bytes (a FAT card's, a forger's) is shown as \\xNN on the problem line, never a traceback.
    bag, _ = case_bag
    (bag / "data" / "BWC0001" / os.fsdecode(b"planted-\xff.mp4")).write_bytes(b"planted")
    rc, problems = validate(bag)
    assert rc == 1
    assert any(p.startswith("data/BWC0001/planted-\\xff.mp4: is not a recording") for p in problems), problems


def test_a_payload_folder_that_cannot_be_listed_is_named(case_bag: tuple[Path, Path]) -> None:
    # Its owner (carol, who exported it) reads the bag with the folder's mode at 000: a problem naming the folder
    # inside the bag, never a traceback, never a bag called valid.
    bag, _ = case_bag
    folder = bag / "data" / "BWC0001"
    folder.chmod(0)
    try:
        out = as_("carol", "bag", "validate", bag)
    finally:
        folder.chmod(0o755)
    assert out.returncode == 1 and b"Traceback" not in out.stderr, out.stderr
    assert "invalid: data/BWC0001: cannot be listed (Permission denied)" in out.stdout.decode().splitlines()


def test_a_removed_recording_is_named(case_bag: tuple[Path, Path]) -> None:
    bag, _ = case_bag
    victim = bag / "data" / "BWC0001" / "go-mp4-sample.mp4"  # segment 3 of case C-7
    victim.unlink()
    assert only_problem_after_rebag(bag) == (
        f"data/BWC0001/go-mp4-sample.mp4: missing: export entry {export_index(bag)} lists segment 3 "
        f"(ingest entry {ingest_index(bag, 'go-mp4-sample.mp4')}) here"
    )


def test_a_swapped_recording_is_named(case_bag: tuple[Path, Path]) -> None:
    bag, _ = case_bag
    victim = bag / "data" / "BWC0001" / "go-mp4-sample.mp4"
    victim.write_bytes((FOOTAGE / "gopro" / "karma.mp4").read_bytes())
    assert only_problem_after_rebag(bag) == (
        f"data/BWC0001/go-mp4-sample.mp4: does not have the digest its ingest entry "
        f"{ingest_index(bag, 'go-mp4-sample.mp4')} recorded"
    )


def test_a_payload_link_to_etc_passwd_is_never_read(case_bag: tuple[Path, Path]) -> None:
    bag, _ = case_bag
    victim = bag / "data" / "BWC0001" / "go-mp4-sample.mp4"
    victim.unlink()
    victim.symlink_to("/etc/passwd")  # the recording's name now shows the account list
    rebag(bag)  # the forger's manifest lists /etc/passwd's digest under the recording's name
    rc, problems = validate(bag)
    assert rc == 1
    index = export_index(bag)
    for expected in (
        "data/BWC0001/go-mp4-sample.mp4: leads outside the bag (a symbolic link); not read",
        f"data/BWC0001/go-mp4-sample.mp4: missing: export entry {index} lists segment 3 "
        f"(ingest entry {ingest_index(bag, 'go-mp4-sample.mp4')}) here",
    ):
        assert expected in problems, problems
    assert hashlib.sha256(Path("/etc/passwd").read_bytes()).hexdigest() not in "\n".join(problems)


def test_a_link_inside_the_bag_is_refused_too(case_bag: tuple[Path, Path]) -> None:
    """A link to a file of the bag itself would count one file twice; a bag holds files, not links."""
    bag, _ = case_bag
    (bag / "data" / "again.mp4").symlink_to(bag / "data" / "BWC0001" / "go-mp4-sample.mp4")
    (bag / "custody" / "key").symlink_to("checkpoint.vkey")
    rebag(bag)
    rc, problems = validate(bag)
    assert rc == 1
    assert "data/again.mp4: is a symbolic link (a bag holds files, not links); not read" in problems
    assert "custody/key: is a symbolic link (a bag holds files, not links); not read" in problems


def test_a_file_beside_the_custody_proofs_is_named(case_bag: tuple[Path, Path]) -> None:
    bag, _ = case_bag
    (bag / "custody" / "notes.txt").write_text("not covered by the tag manifest\n")
    rc, problems = validate(bag)
    assert (rc, problems) == (
        1,
        ["custody/notes.txt: is not in the tag manifest; every file of a custodes bag outside data/ is"],
    )


def test_a_custody_folder_without_its_export_entry_proves_no_payload(case_bag: tuple[Path, Path]) -> None:
    bag, _ = case_bag
    entries = bag / "custody" / "ledger-entries.jsonl"
    lines = entries.read_text().splitlines()
    index = export_index(bag)
    entries.write_text("".join(line + "\n" for line in lines if json.loads(line)["index"] != index))
    rebag(bag)
    rc, problems = validate(bag)
    assert rc == 1
    assert problems == [
        "custody/ledger-entries.jsonl: a bag holds the proof of exactly one export entry (found: none); "
        "payload not held to it"
    ]


def test_a_clean_custodes_bag_is_valid_to_both(case_bag: tuple[Path, Path]) -> None:
    bag, _ = case_bag
    assert validate(bag) == (0, [])
    assert bagit_python_valid(bag)


# --- export: ledgered only when whole, failures ledgered, no links, safe names ------------------------------------


def approved_export(arch: Path, case: str, *segments: int, requester: str = "carol") -> int:
    segs = [x for s in segments for x in ("--segment", s)]
    assert as_("alice", "retention", "case", arch, "--case", case, *segs).returncode == 0
    if requester == "root":  # root audits; its request goes through the service like everyone's
        out = run_cli("access", "request", arch, *segs, "--reason", "court order", "--purpose", "export", "--json")
        assert out.returncode == 0, out.stderr
        rid = json.loads(out.stdout)["id"]
    else:
        rid = request(arch, requester, *segments, purpose="export")
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    return rid


def test_an_export_whose_object_vanished_is_a_ledgered_failure(cli_archive: Path, tmp_path: Path) -> None:
    rid = approved_export(cli_archive, "C-7", 1, 3)
    ((sha,),) = catalog_rows(cli_archive, "SELECT sha256 FROM segments WHERE id = 3")
    (obj,) = [p for p in (cli_archive / "objects").rglob(sha)]
    obj.unlink()
    before = len(ledger_entries(cli_archive))
    out = person_folder(tmp_path / "out", "carol")
    bag = out / "bag"
    result = as_("carol", "export", cli_archive, "--case", "C-7", "--request", rid, "--to", bag)
    one_line_error(
        result,
        rf"export of case C-7 failed: object {sha} is not in the store; "
        rf"the failure is in the ledger and no bag was left at {bag}",
    )
    assert list(out.iterdir()) == []  # no half bag, no staging folder
    added = ledger_entries(cli_archive)[before:]
    assert [e["type"] for e in added] == ["access_export", "access_export", "export_failed"]  # never an "export"
    failed = added[2]
    assert (failed["case"], failed["request"], failed["segments"], failed["by"], failed["export"]) == (
        "C-7",
        rid,
        [1, 3],
        "carol",
        None,
    )
    assert failed["reason"] == f"object {sha} is not in the store"


def fault_run(*args: object, fault: str | None = None, log: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    """The real CLI as root, embedded (the archive handed back to it), with a storage-fault plan
    (custodes._faults): here, a power cut at one fsync or a full disk at one write."""
    return run_cli_with_faults(*[a if isinstance(a, Path) else str(a) for a in args], fault=fault, log=log)


def test_an_export_cut_off_after_its_entry_is_ledgered_failed_by_the_next(cli_archive: Path, tmp_path: Path) -> None:
    """A power cut while the bag is published (its export entry is in the ledger, its bag not at --to) leaves a
    marked staging folder; the next export to that place removes it and ledgers the cut-off export as failed."""
    rid = approved_export(cli_archive, "C-7", 1, 3, requester="root")
    hand_back(cli_archive)  # set up through the service; root exports embedded, as the owner again
    clean = tmp_path / "clean"
    copy_archive(cli_archive, clean)
    log = tmp_path / "ops"
    assert (
        fault_run("export", clean, "--case", "C-7", "--request", rid, "--to", tmp_path / "b0", log=log).returncode == 0
    )
    fsyncs = [line.split("\t") for line in log.read_text().splitlines() if line.startswith("fsync\t")]
    first_publish = next(n for _, n, path in fsyncs if ".partial-" in path)  # after the export entry and custody/
    out = tmp_path / "out"
    out.mkdir()
    bag = out / "bag"
    cut = fault_run(
        "export", cli_archive, "--case", "C-7", "--request", rid, "--to", bag, fault=f"fsync:{first_publish}:crash"
    )
    assert cut.returncode == -9
    (left,) = list(out.iterdir())
    assert left.name.startswith(".bag.partial-") and not bag.exists()
    entries = ledger_entries(cli_archive)
    assert entries[-1]["type"] == "export"  # the cut-off export: nothing yet says what became of it
    cut_off = len(entries) - 1
    again = fault_run("export", cli_archive, "--case", "C-7", "--request", rid, "--to", bag)
    assert again.returncode == 0, again.stderr
    assert [p.name for p in out.iterdir()] == ["bag"]
    after = ledger_entries(cli_archive)[cut_off + 1 :]
    # The grant first: only a granted export cleans up after a crashed one (test_faults: a refused one leaves it).
    assert [e["type"] for e in after] == ["access_export", "access_export", "export_failed", "export"]
    assert after[2]["export"] == cut_off and after[2]["reason"].startswith("interrupted before its bag was published")
    assert export_index(bag) == cut_off + 4
    assert validate(bag) == (0, []) and bagit_python_valid(bag)
    assert run_cli("verify", cli_archive).returncode == 0


def test_a_failure_after_the_export_entry_is_ledgered_against_it(cli_archive: Path, tmp_path: Path) -> None:
    """The disk fills as the tag manifest is written, after the export entry and its custody files: the export
    entry is followed by export_failed naming it, nothing is left beside --to, and the next run exports."""
    rid = approved_export(cli_archive, "C-7", 1, 3, requester="root")
    hand_back(cli_archive)  # set up through the service; root exports embedded, as the owner again
    clean = tmp_path / "clean"
    copy_archive(cli_archive, clean)
    log = tmp_path / "ops"
    assert (
        fault_run("export", clean, "--case", "C-7", "--request", rid, "--to", tmp_path / "b0", log=log).returncode == 0
    )
    writes = [line.split("\t") for line in log.read_text().splitlines() if line.startswith("write\t")]
    n = next(n for _, n, path in writes if path.endswith("tagmanifest-sha256.txt'"))
    out = tmp_path / "out"
    out.mkdir()
    bag = out / "bag"
    before = len(ledger_entries(cli_archive))
    full = fault_run("export", cli_archive, "--case", "C-7", "--request", rid, "--to", bag, fault=f"write:{n}:ENOSPC")
    one_line_error(full, r"the disk is full \(.*tagmanifest-sha256\.txt\)")
    assert list(out.iterdir()) == []
    added = ledger_entries(cli_archive)[before:]
    assert [e["type"] for e in added] == ["access_export", "access_export", "export", "export_failed"]
    assert added[3]["export"] == before + 2 and added[3]["reason"].startswith("No space left on device (")
    assert fault_run("export", cli_archive, "--case", "C-7", "--request", rid, "--to", bag).returncode == 0
    assert validate(bag) == (0, [])


def test_export_through_a_symbolic_link_is_refused_before_logging(cli_archive: Path, tmp_path: Path) -> None:
    rid = approved_export(cli_archive, "C-7", 1)
    real = person_folder(tmp_path / "real", "carol")
    (tmp_path / "link").symlink_to(real)
    person_folder(tmp_path / "empty", "carol")
    (tmp_path / "link-to-empty").symlink_to(tmp_path / "empty")
    before = len(ledger_entries(cli_archive))
    for to, link in (
        (tmp_path / "link" / "bag", tmp_path / "link"),
        (tmp_path / "link-to-empty", tmp_path / "link-to-empty"),
        (tmp_path / "link" / "deeper" / "bag", tmp_path / "link"),
    ):
        out = as_("carol", "export", cli_archive, "--case", "C-7", "--request", rid, "--to", to)
        one_line_error(out, rf"--to {to}: {link} is a symbolic link; name the real folder")
    iso = as_(
        "carol",
        "export",
        cli_archive,
        "--case",
        "C-7",
        "--request",
        rid,
        "--to",
        tmp_path / "b",
        "--iso",
        tmp_path / "link" / "c.iso",
    )
    one_line_error(iso, rf"--iso {tmp_path / 'link' / 'c.iso'}: {tmp_path / 'link'} is a symbolic link")
    out = as_("carol", "export", cli_archive, "--case", "C-7", "--request", rid, "--to", cli_archive / "exports" / "b")
    one_line_error(out, "inside the archive")
    assert list(real.iterdir()) == [] and list((tmp_path / "empty").iterdir()) == [] and not (tmp_path / "b").exists()
    assert len(ledger_entries(cli_archive)) == before  # refused before the grant: nothing logged
    assert as_("carol", "export", cli_archive, "--case", "C-7", "--request", rid, "--to", real / "bag").returncode == 0


def test_the_library_refuses_an_export_through_a_link_too(cli_archive: Path, tmp_path: Path) -> None:
    # The CLI refuses a --to through a link before it calls export_case; an agency tool calling the library
    # gets the same refusal, in the same words, from export_case itself.
    (tmp_path / "link").symlink_to(tmp_path)
    to = tmp_path / "link" / "bag"
    with open_archive(cli_archive) as archive:
        before = len(ledger_entries(cli_archive))
        with pytest.raises(ArchiveError, match=rf"^--to {to}: {tmp_path / 'link'} is a symbolic link; name the real"):
            export_case(archive, "C-7", 1, to)
    assert len(ledger_entries(cli_archive)) == before and not (tmp_path / "bag").exists()


@pytest.mark.parametrize(("device", "safe"), [("..", "_.."), ("/", "_"), ("../..", ".._..")])
def test_an_unsafe_device_id_stays_inside_data(
    make_cli_archive: Callable[..., Path], tmp_path: Path, device: str, safe: str
) -> None:
    arch = make_cli_archive(driver=None)
    vol = tmp_path / "BWC0009"
    vol.mkdir()
    source = FOOTAGE / "phones" / "bt601.mov"
    (vol / "clip.mov").write_bytes(source.read_bytes())
    out = run_cli("ingest", vol, "--archive", arch, "--driver", "generic", "-o", f"device_id={device}")
    assert out.returncode in (0, 1), out.stderr
    assert catalog_rows(arch, "SELECT device_id, original_name FROM segments") == [(device, "clip.mov")]
    rid = approved_export(arch, "C-5", 1)
    out_dir = person_folder(tmp_path / "out", "carol")
    bag = out_dir / "bag"
    assert as_("carol", "export", arch, "--case", "C-5", "--request", rid, "--to", bag).returncode == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["bag"]  # nothing written beside the bag
    files = sorted(p.relative_to(bag).as_posix() for p in bag.rglob("*") if p.is_file() and p.parts[-2] != "custody")
    assert f"data/{safe}/clip.mov" in files and all(f.startswith("data/") or "/" not in f for f in files)
    assert (bag / "data" / safe / "clip.mov").read_bytes() == source.read_bytes()
    assert f"Producer: unknown officer ({device})" in (bag / "bag-info.txt").read_text()  # the original is kept
    ingest = [
        json.loads(base64.b64decode(json.loads(line)["entry"]))
        for line in (bag / "custody" / "ledger-entries.jsonl").read_text().splitlines()
    ]
    assert [e["device"] for e in ingest if e["type"] == "ingest"] == [device]
    assert validate(bag) == (0, []) and bagit_python_valid(bag)


@pytest.mark.parametrize("how", ["embedded", "served"])
def test_a_bag_and_its_disc_image_are_the_exporter_s_alone(cli_archive: Path, tmp_path: Path, how: str) -> None:
    """With a umask of 022 an embedded export left the footage's copies, the tag files and the disc image readable
    by every account (the service's bag was 0600/0700): a hostile review. Both are the exporter's alone now; inside
    the disc image every file is readable (it is read on other machines, by other accounts)."""
    out = tmp_path / ("out-" + how)
    out.mkdir()
    if how == "served":
        out.chmod(0o777)  # carol's CLI writes there
        bag, iso = out / "bag", out / "bag.iso"
        rid = approved_export(cli_archive, "C-7", 1, 3)
        done = as_("carol", "export", cli_archive, "--case", "C-7", "--request", rid, "--to", bag, "--iso", iso)
    else:
        bag, iso = out / "bag", out / "bag.iso"
        rid = approved_export(cli_archive, "C-7", 1, 3, requester="root")
        hand_back(cli_archive)
        done = subprocess.run(
            [sys.executable, "-m", "custodes", "export", str(cli_archive), "--case", "C-7", "--request", str(rid),
             "--to", str(bag), "--iso", str(iso)],
            capture_output=True,
            preexec_fn=lambda: os.umask(0o022),
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    modes = {p: p.stat().st_mode & 0o777 for p in [bag, *bag.rglob("*"), iso]}
    assert {oct(m) for p, m in modes.items() if p.is_dir()} == {"0o700"}, modes
    assert {oct(m) for p, m in modes.items() if not p.is_dir()} == {"0o600"}, modes
    listing = subprocess.run(
        ["xorriso", "-indev", str(iso), "-find", "/", "-exec", "lsdl"], capture_output=True, text=True
    )
    kinds = {line.split()[0] for line in listing.stdout.splitlines() if line.startswith(("-", "d"))}
    assert kinds == {"dr-xr-xr-x", "-r--r--r--"}, listing.stdout[:2000]
