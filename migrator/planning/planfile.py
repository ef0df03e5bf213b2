"""The plan file: YAML, validated against plan.schema.json on the way in and out."""

from __future__ import annotations

import json
import reprlib
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from core import untrusted
from core.atomic import write_atomically
from core.errors import InputError, NotFoundError
from core.plan import Plan
from migrator.planning import yamlout

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
        # jsonschema's message quotes the whole offending value: a file that is no plan would be echoed in full
        message = error.message.replace(repr(error.instance), reprlib.repr(error.instance))
        raise InputError(f"{origin} is not a valid plan: at {where}: {message}")


def plan_document(plan: Plan) -> dict[str, Any]:
    """What the file and ``-o json|yaml`` hold."""
    return plan.to_dict()


def dump_yaml(data: Any) -> str:
    return yamlout.dump(data)


def dumps(plan: Plan) -> str:
    return dump_yaml(plan_document(plan))


def write_plan(plan: Plan, path: str | Path, *, check: bool = False, document: dict[str, Any] | None = None) -> Path:
    """Write atomically (a half-written plan never replaces a good one); a ``.json`` path gets JSON.

    ``document`` is ``plan_document(plan)`` when the caller already has it. ``check`` validates
    against the schema first; the tests prove generated plans valid, and
    validating thousands of VMs costs seconds, so the CLI leaves it to ``read_plan``.
    """
    data = document if document is not None else plan_document(plan)
    if check:
        validate(data, "the generated plan")
    target = Path(path)
    text = json.dumps(data, indent=1) + "\n" if target.suffix == ".json" else dump_yaml(data)
    write_atomically(target, text, "plan file")
    return target


def upgraded(data: Any) -> Any:
    """A plan document in today's format: a disk's ``volume_name`` (before it was renamed) is its ``claim_name``."""
    vms = data.get("vms") if isinstance(data, dict) else None
    for vm in vms if isinstance(vms, list) else []:
        disks = vm.get("disks") if isinstance(vm, dict) else None
        for disk in disks if isinstance(disks, list) else []:
            if isinstance(disk, dict) and "volume_name" in disk and "claim_name" not in disk:
                disk["claim_name"] = disk.pop("volume_name")
    return data


def read_plan(path: str | Path) -> Plan:
    source = Path(path)
    if not source.exists():
        raise NotFoundError(f"plan file {source} does not exist (run 'migrator plan' first)")
    try:
        text = untrusted.read_capped(source, "plan file", untrusted.PLAN_MAX_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"cannot read plan file {source}: not UTF-8 text") from None
    data: Any = None
    if text.lstrip().startswith("{"):  # JSON is YAML too, and parses 100x faster on large plans
        try:
            data = json.loads(text)
        except ValueError:
            data = None
    if data is None:
        try:
            data = untrusted.load_yaml(text)  # safe, and refuses anchors and aliases (alias bombs)
        except untrusted.UntrustedYamlError as error:
            raise InputError(f"plan file {source}: {error}: a plan never needs them") from None
        except yaml.YAMLError:
            raise InputError(f"plan file {source} is not valid YAML") from None
    validate(upgraded(data), f"plan file {source}")
    try:
        plan = Plan.from_dict(data)
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"plan file {source} does not match this version of migrator: {error}") from None
    from migrator.planning.waves import check_waves

    check_waves(plan, f"plan file {source}")
    return plan
