"""The plan file: YAML, validated against plan.schema.json on the way in and out."""

from __future__ import annotations

import json
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from migrator.errors import InputError, NotFoundError
from migrator.planning.model import Plan

SCHEMA_PATH = Path(__file__).with_name("plan.schema.json")


@cache
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


def validate(data: Any, origin: str = "plan") -> None:
    """Raise InputError naming the first problem (with its path in the document)."""
    validator = jsonschema.Draft202012Validator(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise InputError(f"{origin} is not a valid plan: at {where}: {error.message}")


def dumps(plan: Plan) -> str:
    text: str = yaml.safe_dump(plan.to_dict(), sort_keys=False, allow_unicode=True, width=120)
    return text


def write_plan(plan: Plan, path: str | Path) -> Path:
    """Validate, then write atomically (a half-written plan never replaces a good one)."""
    data = plan.to_dict()
    validate(data, "the generated plan")
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".plan-", suffix=".yaml", dir=target.parent)
    except OSError as error:
        raise InputError(f"cannot write plan file {target}: {error.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120))
        os.replace(tmp, target)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write plan file {target}: {error.strerror}") from None
    return target


def read_plan(path: str | Path) -> Plan:
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"plan file {source} does not exist (run 'migrator plan' first)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read plan file {source}: {getattr(error, 'strerror', None) or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise InputError(f"plan file {source} is not valid YAML") from None
    validate(data, f"plan file {source}")
    try:
        return Plan.from_dict(data)
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"plan file {source} does not match this version of migrator: {error}") from None
