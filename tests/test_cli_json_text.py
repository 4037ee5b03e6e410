"""The CLI's --json text (custodes.cli._JsonText, written for speed: issue 14) is json.dumps(indent=2,
ensure_ascii=False) to the byte, whatever the value, and fails as json does."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custodes.cli import _JsonText


def text_of(obj: Any) -> str:
    pieces: list[str] = []
    _JsonText(pieces.append).write(obj)
    return "".join(pieces)


class Level(enum.IntEnum):
    HIGH = 3


class Kind(enum.StrEnum):
    CLIP = "clip"


scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text()
keys = st.text() | st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none()
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.lists(inner, max_size=3).map(tuple) | st.dictionaries(keys, inner, max_size=5)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_same_text_as_json(obj: Any) -> None:
    assert text_of(obj) == json.dumps(obj, indent=2, ensure_ascii=False)


@pytest.mark.parametrize(
    "obj",
    [
        {"name": "\udcff.mp4", "line": 'a\nb\\c"d\x00', "执法仪": "é"},  # a lone surrogate: a non-UTF-8 name
        [float("inf"), float("-inf"), 1e300, -0.0, 2**70, Level.HIGH, Kind.CLIP, True, None],
        {7: "a", 2.5: "b", True: "c", False: "e", None: "d"},
        {"empty": [[], {}, ()], "deep": [[[{"a": [1, {"b": {}}]}]]]},
        [],
        {},
        "just text",
    ],
)
def test_edge_values(obj: Any) -> None:
    assert text_of(obj) == json.dumps(obj, indent=2, ensure_ascii=False)


def test_large_output_comes_in_pieces() -> None:
    pieces: list[str] = []
    obj = {"segments": [{"path": f"/v/CLIP{i:06d}.MP4", "tracks": [{"id": i}]} for i in range(20_000)]}
    _JsonText(pieces.append).write(obj)
    assert len(pieces) > 10 and max(map(len, pieces)) < 1 << 20
    assert "".join(pieces) == json.dumps(obj, indent=2, ensure_ascii=False)


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        ({"when": object()}, TypeError),  # not JSON: json's own message
        ({(1, 2): "tuple key"}, TypeError),
    ],
)
def test_fails_as_json_does(obj: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as ours:
        text_of(obj)
    with pytest.raises(error) as theirs:
        json.dumps(obj, indent=2, ensure_ascii=False)
    assert str(ours.value) == str(theirs.value)


def test_circular_reference_is_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference detected"):
        text_of(loop)
    shared = [1]
    assert text_of([shared, shared]) == json.dumps([shared, shared], indent=2)  # the same list twice is no loop


def lazily(obj: Any) -> Any:
    """``obj`` with every list an iterator of its items (containers within made lazy too)."""
    if isinstance(obj, list):
        return iter([lazily(x) for x in obj])
    if isinstance(obj, dict):
        return {k: lazily(v) for k, v in obj.items()}
    return obj


@settings(max_examples=200, deadline=None)
@given(values)
def test_an_iterator_is_written_as_the_list_of_its_items(obj: Any) -> None:
    """IngestResult.to_json(lazy=True) hands the CLI its per-file lists as iterators, each dict made as it is
    written: the text is the one the lists give, an empty iterator `[]` included."""
    assert text_of(lazily(obj)) == json.dumps(obj, indent=2, ensure_ascii=False)
    assert text_of({"findings": iter([]), "segments": iter([{"a": 1}])}) == json.dumps(
        {"findings": [], "segments": [{"a": 1}]}, indent=2, ensure_ascii=False
    )
