"""The typed report model (custodes.reports): real reports hold exactly the keys and JSON types of its published
schema (docs/report.schema.json, generated from the TypedDicts by report_schema()), and a caller can build one
section of it, which is the same section the whole report holds."""

from __future__ import annotations

import json
import time
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from custodes.archive import open_archive
from custodes.reports import SECTIONS, ReportError, build_report, report_schema
from footage import T0, make_clip
from helpers import as_, build_cli_archive, request, run_cli

ROOT = Path(__file__).resolve().parent.parent
#: The report's keys as they were before the model was typed: the header, then the sections.
HEADER = ("report", "version", "lang", "archive", "generated", "period", "scope", "checkpoint")
AT = "2026-06-01T00:00:00Z"
AT_NS = 1_780_272_000 * 10**9


BJ = timezone(timedelta(hours=8))


def clip_name(seconds: int, seq: int, imp: bool = False, lie: int = 0) -> str:
    """A GA/T 947 name in the device's Beijing time, ``lie`` seconds off the clip's own."""
    t = (T0 + timedelta(seconds=seconds + lie)).astimezone(BJ)
    return f"001234_BWC0001_{t:%Y%m%d%H%M%S}_{seq:04d}{'IMP' if imp else ''}.MP4"


def iso(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An archive with something in every section: recordings with a gap, a missing file, a name that lies and
    a reset clock; a docking clock reading; a task with an explained and an unexplained gap; an approved request,
    a view and a refused one; a hold and a long-term keep."""
    root = tmp_path_factory.mktemp("model")
    arch = build_cli_archive(root / "archive")
    vol = root / "BWC0001"
    for seconds, seq, imp in [(0, 1, False), (2, 2, False), (4, 3, False), (10, 5, False), (12, 6, False)]:
        make_clip(vol / clip_name(seconds, seq, imp), T0 + timedelta(seconds=seconds))
    make_clip(vol / clip_name(14, 7, True, lie=300), T0 + timedelta(seconds=14))
    make_clip(vol / "001234_BWC0001_20000101080000_0008.MP4", T0.replace(year=2000, month=1, day=1))
    (vol / "DOCKCLOCK.TXT").write_text("device_time=2024-03-01 18:00:10\nstation_time=2024-03-01T10:00:00Z\n")
    assert run_cli("ingest", vol, "--archive", arch).returncode == 1
    tasks = root / "tasks.json"
    tasks.write_text(
        json.dumps([{"id": "T1", "type": "stop", "start": iso(-20), "end": iso(6), "devices": ["BWC0001"]}])
    )
    assert as_("alice", "task", "import", arch, tasks).returncode == 0
    explain = ("gap", "explain", arch, "--device", "BWC0001", "--from", iso(-20), "--to", iso(-10))
    assert as_("alice", *explain, "--cause", "battery").returncode == 0
    rid = request(arch, "carol", 1)
    assert as_("bob", "access", "approve", arch, rid).returncode == 0
    assert as_("carol", "access", "open", arch, rid, "--segment", "1").returncode == 0
    assert as_("carol", "access", "open", arch, rid, "--segment", "2").returncode == 1
    assert as_("alice", "retention", "hold", arch, "--segment", "2", "--reason", "complaint").returncode == 0
    assert as_("alice", "retention", "long-term", arch, "--segment", "3", "--reason", "complaint").returncode == 0
    return arch


def problems(instance: Any, schema: dict[str, Any], root: dict[str, Any], where: str = "$") -> list[str]:
    """Where ``instance`` breaks ``schema``: the subset of JSON Schema report_schema() emits ($ref into $defs,
    anyOf, enum, type, properties, required, additionalProperties, items), checked independently of it."""
    if "$ref" in schema:
        return problems(instance, root["$defs"][schema["$ref"].rsplit("/", 1)[1]], root, where)
    if "anyOf" in schema:
        if any(not problems(instance, s, root, where) for s in schema["anyOf"]):
            return []
        return [f"{where}: {instance!r:.60} matches none of {len(schema['anyOf'])} choices"]
    if "enum" in schema and instance not in schema["enum"]:
        return [f"{where}: {instance!r} not one of {schema['enum']}"]
    kind = schema.get("type")
    is_a = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        None: lambda v: True,
    }
    if not is_a[kind](instance):
        return [f"{where}: {instance!r:.60} is not {kind}"]
    out: list[str] = []
    if kind == "object":
        props = schema.get("properties", {})
        out += [f"{where}: {key!r} missing" for key in schema.get("required", []) if key not in instance]
        extra = schema.get("additionalProperties", True)
        for key, v in instance.items():
            if key in props:
                out += problems(v, props[key], root, f"{where}.{key}")
            elif extra is False:
                out.append(f"{where}: {key!r} is not in the schema")
            elif isinstance(extra, dict):
                out += problems(v, extra, root, f"{where}[{key!r}]")
    if kind == "array":
        for i, v in enumerate(instance):
            out += problems(v, schema["items"], root, f"{where}[{i}]")
    return out


def cli_report(arch: Path, out: Path, *args: str) -> dict[str, Any]:
    done = run_cli("report", arch, "--format", "json", "--out", out, "--at", AT, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text())


def test_the_published_schema_is_the_types() -> None:
    published = json.loads((ROOT / "docs" / "report.schema.json").read_text())
    assert published == report_schema()  # scripts/apidoc writes it; tests/test_public_api.py checks it is current
    assert published["required"] == list(HEADER)
    assert list(published["properties"]) == [*HEADER, *SECTIONS]


@pytest.mark.parametrize("args", [(), ("--scope", "device=BWC0001", "--from", "2024-03-01T09:59:00Z"), ("--verify",)])
def test_real_reports_hold_exactly_the_schema(built: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    model = cli_report(built, tmp_path / "r.json", *args)
    schema = report_schema()
    assert problems(model, schema, schema) == []
    assert set(model) == {*HEADER, *SECTIONS}  # today's keys (the JSON reporter writes the findings last)
    # every part of the model is there to be checked, not empty lists that would pass any item schema
    assert model["completeness"]["tasks"] and model["timelines"]["devices"] and model["timelines"]["tasks"]
    assert model["clocks"]["drift"] and model["concerns"] and model["findings"]
    assert model["timelines"]["devices"][0]["explained"] and model["timelines"]["tasks"][0]["explained"]
    # the docking reading puts the clock 10 s back: recorded -10..-4 s and 0..4 s of a task from -20 to 6 s
    assert model["completeness"]["gaps_by_cause"] == {"battery": 1, "unexplained": 2}
    assert {f["kind"] for f in model["findings"]} >= {"gap", "sequence_break", "name_time_mismatch"}


def test_the_schema_check_finds_what_is_wrong(built: Path, tmp_path: Path) -> None:
    """The check above can fail: a missing key, a wrong type, a key the schema does not know, a bad item."""
    model = cli_report(built, tmp_path / "r.json")
    schema = report_schema()
    del model["clocks"]["drift"]
    model["integrity"]["ok"] = "yes"
    model["access"]["approvals"] = 1
    model["completeness"]["tasks"][0]["covered_share"] = None
    model["findings"][0]["anything"] = "a finding may carry its own facts"
    assert problems(model, schema, schema) == [
        "$.integrity.ok: 'yes' is not boolean",
        "$.completeness.tasks[0].covered_share: None is not number",
        "$.clocks: 'drift' missing",
        "$.access: 'approvals' is not in the schema",
    ]


def test_one_section_is_built_alone_and_equals_the_whole_reports(built: Path) -> None:
    with open_archive(built) as archive:
        whole = build_report(archive, at=AT_NS)
        assert list(whole) == [*HEADER, *SECTIONS]  # today's keys, in today's order
        for asked in [("completeness",), ("access", "timelines"), ("retention",), (), "clocks"]:
            part = build_report(archive, at=AT_NS, sections=asked)
            names = (asked,) if isinstance(asked, str) else asked
            assert list(part) == [*HEADER, *(s for s in SECTIONS if s in names)]
            assert {k: part[k] for k in part} == {k: whole[k] for k in part}  # type: ignore[literal-required]


def test_one_section_is_faster_than_the_whole_report(built: Path) -> None:
    """Measured on this archive: the whole report runs the ledger's verification, the access log and the
    timelines; completeness alone reads the findings and the tasks' coverage only."""
    with open_archive(built) as archive:

        def best(**kw: Any) -> float:
            times = []
            for _ in range(5):
                began = time.perf_counter()
                build_report(archive, at=AT_NS, **kw)
                times.append(time.perf_counter() - began)
            return min(times)

        whole, completeness = best(), best(sections=("completeness",))
    print(f"whole report {whole * 1000:.1f} ms, completeness alone {completeness * 1000:.1f} ms")
    assert completeness < whole


def test_an_unknown_section_is_refused(built: Path) -> None:
    with open_archive(built) as archive, pytest.raises(ReportError) as e:
        build_report(archive, sections=("completeness", "gaps", "audit"))
    assert str(e.value) == (
        "no report section audit, gaps (known: integrity, completeness, clocks, timeliness, recording, retention, "
        "access, devices, concerns, findings, timelines)"
    )
