"""A fast block-style YAML writer for plain data (dict, list, str, int, float, bool, None).

PyYAML's representer is pure Python and takes seconds on a plan of thousands of VMs; plan
files hold only plain data, so this writes the same YAML directly. Strings that could be
misread (numbers, booleans, null, leading indicators, ``: `` or `` #``) are written as JSON
strings, which are valid YAML double-quoted scalars. ``yaml.safe_load(dump(x)) == x`` holds
for all plain data (tests check it).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

# plain only when no YAML indicator can apply: a letter, '_' or '/' first; no ':', '#', ',', brackets, quotes
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_ ./()+\-@]*$")
# YAML 1.1 words a loader turns into booleans / null, whatever their case
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value)
    return _string(str(value))


@lru_cache(maxsize=65536)  # plans repeat the same strings (models, kinds, networks) thousands of times
def _string(text: str) -> str:
    if _PLAIN.match(text) and text.lower() not in _RESERVED and not text.endswith(" "):
        return text
    return json.dumps(text, ensure_ascii=False)


def _emit(value: Any, indent: str, out: list[str]) -> None:
    """Append the lines of a block collection (value is a non-empty dict or list)."""
    if isinstance(value, dict):
        for key, item in value.items():
            name = scalar(str(key))
            if isinstance(item, (dict, list)) and item:
                out.append(f"{indent}{name}:")
                _emit(item, indent + "  " if isinstance(item, dict) else indent, out)
            else:
                out.append(f"{indent}{name}: {_inline(item)}")
    else:
        for item in value:
            if isinstance(item, (dict, list)) and item:
                start = len(out)
                _emit(item, indent + "  ", out)
                out[start] = f"{indent}- {out[start][len(indent) + 2 :]}"
            else:
                out.append(f"{indent}- {_inline(item)}")


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return scalar(value)


def dump(data: Any) -> str:
    if not isinstance(data, (dict, list)) or not data:
        return _inline(data) + "\n"
    out: list[str] = []
    _emit(data, "", out)
    return "\n".join(out) + "\n"
