"""The read commands' output module: columns as data, a table that never breaks a long name."""

from __future__ import annotations

import json

import yaml

from migrator.cli.output import Column, render

COLUMNS = (Column("NAME", "name", no_wrap=True), Column("PHASE", "phase"), Column("PID", "pid", wide_only=True))
ROWS = [
    {"name": "a-virtual-machine-whose-name-is-longer-than-thirty-two-characters", "phase": "Running", "pid": 7},
    {"name": "web01", "phase": "Stopped", "pid": None},
]


def test_table_keeps_long_names_whole_and_columns_aligned() -> None:
    lines = render(ROWS, "table", rows=ROWS, columns=COLUMNS).splitlines()
    assert lines[0].split() == ["NAME", "PHASE"]
    starts = {line.index(word) for line, word in zip(lines, ["PHASE", "Running", "Stopped"], strict=True)}
    assert len(starts) == 1  # one column, whatever the first one's width
    assert lines[1].startswith(ROWS[0]["name"] + "  ")


def test_wide_no_headers_name_json_yaml() -> None:
    wide = render(ROWS, "wide", rows=ROWS, columns=COLUMNS, no_headers=True).splitlines()
    assert len(wide) == 2 and wide[0].split()[-1] == "7" and wide[1].split()[-1] == "-"
    names = [str(r["name"]) for r in ROWS]
    assert render(ROWS, "name", names=names).splitlines() == names
    assert json.loads(render(ROWS, "json")) == ROWS
    assert yaml.safe_load(render(ROWS, "yaml")) == ROWS
