"""Defaults a user can defend (DESIGN.md), in a module light enough for the CLI to import at start."""

from datetime import UTC

from custodes.errors import CustodesError

NS = 1_000_000_000

#: Folders file systems and desktops leave on removable volumes (their indexes, never footage); skipped, and listed
#: (custodes.drivers.scan_volume, which re-exports this; kept in custodes.defaults so that custodes.rights, which
#: every command imports, does not import the drivers for it). A trash folder (``.Trashes``, ``$RECYCLE.BIN``) is
#: not one: what a person deleted on the card is read like the rest (a hostile review: deleted recordings there
#: were skipped without a word).
NOISE = frozenset({"System Volume Information", ".Spotlight-V100", ".fseventsd"})
#: Times before 2005-01-01 are an unset clock: no enforcement recorder predates it.
DEFAULT_CLOCK_FLOOR = 1_104_537_600 * NS
#: Between chapters of one recording, more than 1 s uncovered is a gap.
DEFAULT_GAP_TOLERANCE = 1 * NS


def clock_is_set(ns: int | None) -> bool:
    """Whether a device-clock time can be believed: known, and not before the floor
    (an unset clock, whether a file name or a container said it)."""
    return ns is not None and ns >= DEFAULT_CLOCK_FLOOR


# ---------------------------------------------------------------------------
# Times and durations as int64 nanoseconds.
#
# The catalog, the ledger and the Rust core hold every time as signed 64-bit
# nanoseconds since 1970 UTC, which reach from 1677-09-21 to 2262-04-11. A
# value outside that (a task "until 9999", --hours 1e9, --gap-tolerance inf)
# must be refused where it enters, with the value named, not crash SQLite or
# the core later. Every parser converts through these two functions, so the
# rule lives in one place.

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


class TimeRangeError(CustodesError, ValueError):
    """A time or duration that cannot be held as int64 nanoseconds (or is not a number)."""

    kind = "time_range"


def _checked(ns: int, what: str, value: object) -> int:
    if not INT64_MIN <= ns <= INT64_MAX:
        raise TimeRangeError(
            f"{what}: {value!r} is out of range: custodes records times from 1677-09-21 "
            "to 2262-04-11 (UTC) and durations up to 292 years"
        )
    return ns


def ns_from_seconds(seconds: float, what: str) -> int:
    """Seconds (a float from an option, a policy or a container) as int64 ns; NaN, infinities
    and values past ±292 years raise :class:`TimeRangeError` naming ``what``."""
    import math

    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds):
        raise TimeRangeError(f"{what}: {seconds!r} is not a finite number of seconds")
    if isinstance(seconds, int):
        return _checked(seconds * NS, what, seconds)
    if abs(seconds) > INT64_MAX / NS + 1:  # before multiplying: 1e300 * 1e9 is inf, and round(inf) raises
        return _checked(INT64_MAX + 1, what, seconds)
    return _checked(round(seconds * NS), what, seconds)


def ns_from_datetime(dt: object, what: str) -> int:
    """An aware :class:`datetime.datetime` as int64 ns since 1970 UTC, exactly (integer arithmetic:
    no float rounding, right before 1970 too)."""
    from datetime import datetime, timedelta

    assert isinstance(dt, datetime) and dt.tzinfo is not None, "ns_from_datetime needs an aware datetime"
    try:
        delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    except OverflowError:  # an offset that pushes year 1 or 9999 past datetime's own range
        raise TimeRangeError(
            f"{what}: {dt.isoformat()!r} is out of range: custodes records times from 1677-09-21 to 2262-04-11 (UTC)"
        ) from None
    ns = delta // timedelta(microseconds=1) * 1000
    return _checked(ns, what, dt.isoformat())


def ns_add(a: int, b: int, what: str) -> int:
    """``a + b`` for two int64 ns values (now + a window), refused when the sum leaves int64; the message
    says where the sum would fall (past 2262 or before 1677), never the internal nanosecond sum."""
    if a + b > INT64_MAX:
        raise TimeRangeError(
            f"{what} would be past 2262-04-11 (UTC), where custodes' times end: ask for a shorter time"
        )
    if a + b < INT64_MIN:
        raise TimeRangeError(f"{what} would be before 1677-09-21 (UTC), where custodes' times begin")
    return a + b


#: Line and paragraph separators, and the explicit bidirectional embeddings, overrides and isolates
#: (U+202A-U+202E, U+2066-U+2069): with one of those a reason shows on a page, in a report or on a terminal
#: otherwise than it was ledgered ("complaint \u202e RTL" shows as "complaint LTR").
_NOT_IN_TEXT = frozenset("\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


#: The most characters a person's free text may hold (a reason, a note, a case id): the CLI's options, the
#: HTTP API's fields and the page's forms alike (a hostile review: the API refused 4,001, the CLI took 120,000).
MAX_TEXT = 4000


#: Unicode's Default_Ignorable_Code_Point ranges (DerivedCoreProperties.txt): characters a text shows nothing of,
#: some of them letters by their category (U+3164 HANGUL FILLER, U+115F, U+FFA0) or marks (U+034F, the variation
#: selectors), so neither the category nor "format character" alone finds them all (a hostile review).
_IGNORABLE = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


#: Characters that are no space nor default-ignorable, yet show as a blank: the empty Braille pattern, the Khitan
#: small script filler.
_BLANK_LOOKING = frozenset("\u2800\U00016fe4")


def shows_nothing(ch: str) -> bool:
    """``ch`` is a character that text shows nothing of (:data:`_IGNORABLE`)."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _IGNORABLE)


def says_something(text: str) -> bool:
    """The one rule of text that says something: it holds a letter or a digit of any script that shows. Blank
    text, punctuation alone, or characters that show nothing (U+200B, U+FEFF, U+2800, U+3164 ...) say nothing."""
    import unicodedata  # (here, not at the top: this module is imported as the CLI starts)

    return any(unicodedata.category(ch)[0] in "LN" and not shows_nothing(ch) for ch in text)


def given_reason(reason: str, act: str) -> str:
    """``reason`` as the reason for ``act`` ("a hold", "a denial"), refused when it says nothing (no letter or
    digit: blank, "." or invisible characters alone; a hostile review): every act a person must give a reason
    for (Art. 22: who, when, why) asks this one rule, in the library, so no caller (the CLI, the HTTP API, an
    agency's own tool) records a reason that says nothing."""
    if not says_something(reason):
        raise CustodesError(f"{act} needs a reason: say why, in words")
    return reason


def given_id(value: str, what: str) -> str:
    """``value`` as an identifier people type and match again (a case id): refused when it says nothing, starts or
    ends with a space, or holds a character that shows nothing (a format character such as U+200B): "C1",
    "C1 " and "C\u200b1" were three cases that all showed as C1, and an export of " lead" was not found as
    "lead" (a hostile review)."""
    if not says_something(value):
        raise CustodesError(f"{what} {value!r} says nothing: give it in letters or digits")
    if value != value.strip():
        raise CustodesError(f"{what} {value!r} starts or ends with a space: give it without")
    # A tab or another space than U+0020 shows as one ("C\t1", "C\u30001" and "C 1" look alike), and so do two.
    odd = next((ch for ch in value if ch.isspace() and ch != " "), None)
    if odd is not None:
        raise CustodesError(f"{what} {value!r} holds a space other than ' ' ({odd!r}): give it with plain spaces")
    if "  " in value:
        raise CustodesError(f"{what} {value!r} holds two spaces in a row: give it with one")
    import unicodedata

    # "C\u0301" and "\u0106" are one letter, and the Kelvin sign is K: each shown alike, a case of its own.
    if unicodedata.normalize("NFC", value) != value:
        raise CustodesError(
            f"{what} {value!r} is not in Unicode's composed form (NFC): give it as "
            f"{unicodedata.normalize('NFC', value)!r}, which shows the same"
        )
    # Private-use and unassigned characters show as a box, or as nothing, or as another's glyph in some font; a
    # blank Braille pattern and the fillers show as a space (a second hostile review).
    unseen = next((ch for ch in value if unicodedata.category(ch) in ("Co", "Cn")), None)
    if unseen is not None:
        raise CustodesError(
            f"{what} {value!r} holds a character no font shows as itself (U+{ord(unseen):04X}, private use or "
            "unassigned): give it without"
        )
    hidden = next(
        (ch for ch in value if unicodedata.category(ch) == "Cf" or shows_nothing(ch) or ch in _BLANK_LOOKING), None
    )
    if hidden is not None:
        raise CustodesError(
            f"{what} {value!r} holds a character that shows nothing (U+{ord(hidden):04X}): give it without"
        )
    return value


def text_problem(value: str, *, single_line: bool) -> str | None:
    """Why ``value`` cannot be free text a person typed (a reason, a note, a case id) that is logged, ledgered
    and printed, or None when it can: it must be valid UTF-8 (argv that is not UTF-8 reaches Python as lone
    surrogates, and so does a JSON ``\\udcXX`` escape; no ledger entry or JSON output can hold them) and hold no
    control character (nor a bidirectional override: :data:`_NOT_IN_TEXT`), except tab and, unless
    ``single_line``, newline. The CLI's text options, the HTTP API's text fields and the page's forms ask this."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        try:
            shown = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            shown = value.encode("utf-8", "backslashreplace")
        return f"{shown!r} is not valid UTF-8 text: give it in UTF-8"
    if len(value) > MAX_TEXT:
        return f"{len(value)} characters; give at most {MAX_TEXT}"
    allowed = "\t" if single_line else "\t\n"
    for ch in value:
        if ch not in allowed and (ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 or ch in _NOT_IN_TEXT):
            where = "one line of text" if single_line else "text"
            return f"{value!r} holds a control character ({ch!r}): give {where} without it"
    return None
