"""Write the fuzz seeds of hostile container shapes (issue 10) into this folder.

    python3 rust/custodes-core/fuzz/seeds/make_seeds.py

The files are committed; this script says how each was made. scripts/fuzz
starts the box_walker run from them and from the real footage, and the Rust
test `media::tests::fuzz_seeds_keep_the_walker_invariants` reads every one.
Each stays far under the fuzz run's -max_len (1 MiB).
"""

from __future__ import annotations

import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
FOOTAGE = HERE.parents[3] / "tests" / "data" / "footage"
U32_MAX = 0xFFFF_FFFF
#: Samples a "huge count" seed declares: far beyond its bytes (16 bytes of stts),
#: yet cheap to expand, so the fuzz run keeps thousands of runs a second. Counts
#: past the per-file budget (10^7, where each run costs a second under the
#: sanitizer) are the mutator's to find, and media.rs tests them.
HUGE = 100_000
FTYP = struct.pack(">I4s4sI4s", 20, b"ftyp", b"isom", 0, b"isom")


def box(typ: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), typ) + payload


def full(typ: bytes, version: int, payload: bytes) -> bytes:
    return box(typ, bytes([version, 0, 0, 0]) + payload)


def be(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def mvhd(timescale: int = 1000, duration: int = 0) -> bytes:
    return full(b"mvhd", 0, be(0, 0, timescale, duration) + bytes(80))


def trak(track_id: int, stbl: bytes = b"", timescale: int = 1000, extra: bytes = b"") -> bytes:
    tkhd = full(b"tkhd", 0, be(0, 0, track_id) + bytes(72))
    mdhd = full(b"mdhd", 0, be(0, 0, timescale, 0) + bytes(4))
    return box(b"trak", tkhd + extra + box(b"mdia", mdhd + box(b"minf", box(b"stbl", stbl))))


def flipped(src: Path, fourcc: bytes) -> bytes:
    """A real file with the version byte of its first ``fourcc`` set from 0 to 1."""
    data = bytearray(src.read_bytes())
    data[data.index(fourcc) + 4] = 1
    return bytes(data)


def seeds() -> dict[str, bytes]:
    androidx = FOOTAGE / "encoders" / "androidx-sample.mp4"
    iphone = (FOOTAGE / "phones" / "dolbyVision-hdr.MOV").read_bytes()
    stts_bomb = full(b"stts", 0, be(1, HUGE, 1))
    fragment_traf = box(b"traf", full(b"tfhd", 0, be(1)) + full(b"trun", 0, be(HUGE)) * 3)
    return {
        # A version byte flipped 0 -> 1: 64-bit times read from 32-bit fields.
        "mvhd-version-flipped.mp4": flipped(androidx, b"mvhd"),
        "mdhd-version-flipped.mp4": flipped(androidx, b"mdhd"),
        # A QuickTime creation date in the year 9999.
        "creationdate-9999.mov": iphone.replace(b"2023-05-09T12:41:46+0100", b"9999-05-09T12:41:46+0100"),
        # More tracks than the cap (the file has two million).
        "many-traks.mp4": FTYP + box(b"moov", box(b"trak") * 1100),
        # Boxes nested far deeper than the walker follows.
        "deep-nesting.mp4": FTYP + box(b"moov", box(b"trak", box(b"mdia", _nest(b"minf", 200)))),
        # Sample counts far beyond the bytes: stts and fragment runs.
        "huge-stts-counts.mp4": FTYP + box(b"moov", mvhd() + trak(1, stts_bomb) + trak(2, stts_bomb)),
        "huge-trun-counts.mp4": FTYP + box(b"moov", mvhd() + trak(1)) + box(b"moof", fragment_traf),
        # stsc runs going back and forth between chunk 1 and the last (was a quadratic walk).
        "stsc-out-of-order.mp4": FTYP
        + box(
            b"moov",
            trak(
                1,
                full(b"stts", 0, be(1, 10, 1))
                + full(b"stsc", 0, be(2000) + be(1, 0, 1, 2000, 0, 1) * 1000)
                + full(b"stco", 0, be(2000) + be(0) * 2000),
            ),
        ),
        # A flood of problems: fragments for a track the movie does not declare.
        "unknown-track-flood.mp4": FTYP + box(b"moov") + box(b"moof", box(b"traf", full(b"tfhd", 0, be(99))) * 300),
        # Edit list and metadata beyond their caps; a metadata key too long to copy.
        "many-edits.mp4": FTYP
        + box(b"moov", trak(1, extra=box(b"edts", full(b"elst", 0, be(1100) + be(1, 0, 0x10000) * 1100)))),
        "many-metadata-items.mp4": FTYP + box(b"moov", box(b"udta", box(b"\xa9cmt", be(0x00010000) + b"x") * 1100)),
        "long-metadata-key.mp4": FTYP
        + box(
            b"moov",
            box(
                b"meta",
                full(b"hdlr", 0, bytes(20))
                + full(b"keys", 0, be(1, 2008) + b"mdta" + b"k" * 2000)
                + box(b"ilst", box(be(1), box(b"data", be(1, 0) + b"v") * 50)),
            ),
        ),
        # Times and spans out of range: a 64-bit box size past any offset, durations of centuries.
        "size-past-any-offset.mp4": FTYP + b"\0\0\0\x01mdat" + struct.pack(">Q", 2**64 - 1),
        "duration-centuries.mp4": FTYP
        + box(b"moov", mvhd(1, U32_MAX - 1) + trak(1, full(b"stts", 0, be(1, 2, U32_MAX)), timescale=1)),
    }


def _nest(typ: bytes, depth: int) -> bytes:
    inner = full(b"stts", 0, be(0))
    for _ in range(depth):
        inner = box(typ, inner)
    return inner


if __name__ == "__main__":
    for name, data in seeds().items():
        assert len(data) < 1 << 20, name
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")
