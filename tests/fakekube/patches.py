"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902, via `jsonpatch`), strategic merge patch for
built-in types (driven by the types' schemas: patch strategies and merge keys), and a simplified server-side apply
(list types and map keys from the schema)."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonpatch

from . import typeschema
from .errors import StatusError, bad_request
from .typeschema import Schema

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise bad_request("json patch must be a list of operations")
    try:
        return jsonpatch.apply_patch(target, operations, in_place=False)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise StatusError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
        ) from exc
    except (TypeError, KeyError, IndexError) as exc:
        raise bad_request(f"invalid json patch: {exc}") from exc


def strategic_merge_patch(target: Any, patch: Any, schema: Schema | None) -> Any:
    """Strategic merge patch driven by the type's schema, as the real server's: maps merge; lists whose
    patchStrategy is merge merge by their patchMergeKey (or as sets for primitives); other lists are replaced.
    Directives: `$patch` (replace, delete), `$retainKeys`, `$deleteFromPrimitiveList/<field>`;
    `$setElementOrder/<field>` is accepted and ignored."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [x for x in result.get(name) or [] if x not in value]
            continue
        sub = typeschema.field(schema, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, sub)
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_list(current: Any, patch: list[Any], schema: Schema | None) -> list[Any]:
    current = current if isinstance(current, list) else []
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [copy.deepcopy(x) for x in patch if not (isinstance(x, dict) and "$patch" in x)]
    key = typeschema.patch_merge_key(schema)
    if key is None:
        if typeschema.is_merge_set(schema) and not any(isinstance(x, dict) for x in patch):
            out = list(current)
            out.extend(x for x in patch if x not in out)
            return out
        return copy.deepcopy(patch)
    item_schema = typeschema.items(schema)
    out = [copy.deepcopy(x) for x in current]
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"strategic merge patch: list items keyed by {key} must be objects")
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(strategic_merge_patch({}, item, item_schema))
        else:
            out[idx] = strategic_merge_patch(out[idx], item, item_schema)
    return out


# ---- server-side apply (simplified) -------------------------------------------------------------------------
# Paths are tuples of FieldsV1 elements: "f:<field>", 'k:{"name":"main"}' for an item of a keyed list,
# 'v:"value"' for an element of a set.


def _key_element(item: dict[str, Any], keys: list[str]) -> str:
    return "k:" + json.dumps({k: item.get(k) for k in keys}, separators=(",", ":"), sort_keys=True)


def field_paths(obj: Any, schema: Schema | None, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Leaf paths of an applied configuration, as FieldsV1 elements."""
    paths: set[tuple[str, ...]] = set()
    if isinstance(obj, dict):
        if not obj and prefix:
            paths.add(prefix)
        for k, v in obj.items():
            if prefix == () and k in ("apiVersion", "kind"):
                continue
            paths |= field_paths(v, typeschema.field(schema, k), (*prefix, f"f:{k}"))
        return paths
    if isinstance(obj, list) and prefix:
        keys = typeschema.list_keys(schema)
        if keys and all(isinstance(x, dict) for x in obj):
            item_schema = typeschema.items(schema)
            for item in obj:
                element = (*prefix, _key_element(item, keys))
                rest = {k: v for k, v in item.items() if k not in keys}
                paths |= field_paths(rest, item_schema, element) if rest else {element}
            if not obj:
                paths.add(prefix)
            return paths
        if typeschema.is_merge_set(schema) and not any(isinstance(x, (dict, list)) for x in obj):
            paths |= {(*prefix, "v:" + json.dumps(x)) for x in obj} or {prefix}
            return paths
    paths.add(prefix)
    return paths


def changed_paths(
    before: Any, after: Any, schema: Schema | None, prefix: tuple[str, ...] = ()
) -> tuple[set[tuple[str, ...]], set[tuple[str, ...]]]:
    """(paths set or changed in `after`, paths present in `before` and gone from `after`), in one walk."""
    if before == after:
        return set(), set()
    if isinstance(before, dict) and isinstance(after, dict) and (before or after):
        set_, removed = set(), set()
        for k in before.keys() | after.keys():
            if prefix == () and k in ("apiVersion", "kind"):
                continue
            path = (*prefix, f"f:{k}")
            sub = typeschema.field(schema, k)
            if k not in after:
                removed |= field_paths(before[k], sub, path)
            elif k not in before:
                set_ |= field_paths(after[k], sub, path)
            else:
                a, b = changed_paths(before[k], after[k], sub, path)
                set_ |= a
                removed |= b
        return set_, removed
    if isinstance(before, list) and isinstance(after, list) and prefix:
        keys = typeschema.list_keys(schema)
        if keys and all(isinstance(x, dict) for x in before + after):
            item_schema = typeschema.items(schema)
            old_items = {_key_element(x, keys): x for x in before}
            new_items = {_key_element(x, keys): x for x in after}
            set_, removed = set(), set()
            for element in old_items.keys() | new_items.keys():
                path = (*prefix, element)
                old_rest = {k: v for k, v in old_items.get(element, {}).items() if k not in keys}
                new_rest = {k: v for k, v in new_items.get(element, {}).items() if k not in keys}
                if element not in new_items:
                    removed |= field_paths(old_rest, item_schema, path) if old_rest else {path}
                elif element not in old_items:
                    set_ |= field_paths(new_rest, item_schema, path) if new_rest else {path}
                else:
                    a, b = changed_paths(old_rest, new_rest, item_schema, path)
                    set_ |= a
                    removed |= b
            return set_, removed
    if after is None:
        return set(), field_paths(before, schema, prefix)
    return field_paths(after, schema, prefix), set()


def fields_v1(paths: set[tuple[str, ...]]) -> dict[str, Any]:
    """managedFields' FieldsV1 trie."""
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for i, part in enumerate(path):
            node = node.setdefault(part, {})
            if part.startswith("k:") and i < len(path) - 1:
                node.setdefault(".", {})
    return root


def paths_from_fields_v1(trie: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for part, sub in trie.items():
        if part == ".":
            continue
        inner = {k: v for k, v in sub.items() if k != "."} if isinstance(sub, dict) else {}
        if inner:
            out |= paths_from_fields_v1(inner, (*prefix, part))
        else:
            out.add((*prefix, part))
    return out


def _item_matches(item: Any, element: str) -> bool:
    if element.startswith("k:"):
        keys = json.loads(element[2:])
        return isinstance(item, dict) and all(item.get(k) == v for k, v in keys.items())
    if element.startswith("v:"):
        return item == json.loads(element[2:])
    return False


def value_at(obj: Any, path: tuple[str, ...]) -> Any:
    cur = obj
    for part in path:
        if part.startswith("f:") and isinstance(cur, dict):
            cur = cur.get(part[2:])
        elif isinstance(cur, list):
            cur = next((x for x in cur if _item_matches(x, part)), None)
        else:
            return None
    return cur


def remove_path(obj: Any, path: tuple[str, ...]) -> None:
    """Remove one leaf (and the empty parents it leaves) from an object."""
    if not path or not isinstance(obj, (dict, list)):
        return
    head, rest = path[0], path[1:]
    if head.startswith("f:") and isinstance(obj, dict):
        name = head[2:]
        if name not in obj:
            return
        if not rest:
            del obj[name]
            return
        remove_path(obj[name], rest)
        if obj[name] in ({}, []):
            del obj[name]
    elif isinstance(obj, list):
        for i, item in enumerate(obj):
            if _item_matches(item, head):
                if not rest or head.startswith("v:"):
                    obj.pop(i)
                else:
                    remove_path(item, rest)
                    keys = json.loads(head[2:])
                    if set(item) <= set(keys):
                        obj.pop(i)
                return


def apply_merge(target: Any, applied: Any, schema: Schema | None) -> Any:
    """Merge an applied configuration into the live object: maps merge, lists of type map merge by their keys,
    sets are united, other (atomic) lists and scalars are replaced."""
    if isinstance(applied, dict):
        result = dict(target) if isinstance(target, dict) else {}
        for k, v in applied.items():
            result[k] = apply_merge(result.get(k), v, typeschema.field(schema, k))
        return result
    if isinstance(applied, list) and isinstance(target, list):
        keys = typeschema.list_keys(schema)
        if keys and all(isinstance(x, dict) for x in applied):
            item_schema = typeschema.items(schema)
            out = [copy.deepcopy(x) for x in target]
            for item in applied:
                element = _key_element(item, keys)
                idx = next((i for i, x in enumerate(out) if _item_matches(x, element)), None)
                if idx is None:
                    out.append(copy.deepcopy(item))
                else:
                    out[idx] = apply_merge(out[idx], item, item_schema)
            return out
        if typeschema.is_merge_set(schema):
            out = list(target)
            out.extend(x for x in applied if x not in out)
            return out
    return copy.deepcopy(applied)
