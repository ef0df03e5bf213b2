"""Fuzz the plan and map readers: any file is a plan (maps) or one of our errors, within bounds."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from migrator.planning.mapping import load_map_file
from migrator.planning.planfile import read_plan
from tests.fuzz.bounded import bounded, mutate

PLAN = {
    "apiVersion": "migrator/v1alpha1",
    "kind": "Plan",
    "name": "fuzz",
    "source": "vmx:/x/vm.vmx",
    "target_namespace": "default",
    "network_map": [],
    "storage_map": [],
    "vms": [],
}
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=20)
)
DATA = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
EDITS = st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 16), st.binary(max_size=16)), max_size=6)


def _file(name: str, data: bytes) -> tuple[tempfile.TemporaryDirectory, Path]:  # type: ignore[type-arg]
    folder = tempfile.TemporaryDirectory(prefix="migrator-fuzz-")
    path = Path(folder.name) / name
    path.write_bytes(data)
    return folder, path


def _text(document: Any, as_json: bool) -> bytes:
    return (json.dumps(document) if as_json else yaml.safe_dump(document)).encode()


@given(st.sampled_from(sorted(PLAN)), DATA, st.booleans(), EDITS)
def test_plan_documents(key: str, value: Any, as_json: bool, edits: list[tuple[int, int, bytes]]) -> None:
    document = {**PLAN, key: value}
    for blob in (_text(document, as_json), mutate(_text(PLAN, as_json), edits)):
        folder, path = _file("plan.yaml", blob)
        with folder:
            bounded(read_plan, path)


@given(DATA, EDITS)
def test_plan_any_yaml(document: Any, edits: list[tuple[int, int, bytes]]) -> None:
    folder, path = _file("plan.yaml", mutate(_text(document, False), edits))
    with folder:
        bounded(read_plan, path)


@given(st.one_of(DATA, st.fixed_dictionaries({"networks": DATA, "storage": DATA})), EDITS)
def test_map_files(document: Any, edits: list[tuple[int, int, bytes]]) -> None:
    for blob in (_text(document, False), mutate(_text(document, False), edits)):
        folder, path = _file("map.yaml", blob)
        with folder:
            bounded(load_map_file, str(path))
