"""runtime.info_rows: only changed rows are rebuilt, and snapshots never change under readers."""

from __future__ import annotations

from runtime.info_rows import InfoRows


def test_only_marked_rows_are_rebuilt_and_gone_keys_drop_out() -> None:
    data = {"a": 1, "b": 2}
    built: list[str] = []

    def row_of(key: str):
        built.append(key)
        return {"v": data[key]} if key in data else None

    rows = InfoRows(row_of)
    rows.mark(["a", "b"])
    first = rows.snapshot()
    assert first == {"a": {"v": 1}, "b": {"v": 2}} and sorted(built) == ["a", "b"]

    built.clear()
    data["a"] = 10
    assert rows.snapshot() == first and built == [], "nothing marked: nothing rebuilt"
    assert rows.snapshot()["a"] == {"v": 1}, "an unmarked change is not seen (callers mark)"

    rows.mark(["a"])
    second = rows.snapshot()
    assert second == {"a": {"v": 10}, "b": {"v": 2}} and built == ["a"]
    assert first == {"a": {"v": 1}, "b": {"v": 2}}, "an earlier snapshot is never mutated"

    del data["b"]
    rows.mark(["b"])
    assert rows.snapshot() == {"a": {"v": 10}}
