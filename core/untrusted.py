"""Reading files a user hands us (plans, maps, descriptors): size-capped, and YAML without aliases.

Plans and map files never need YAML anchors or aliases, and aliases are what an "alias bomb"
(a few hundred bytes that expand to billions of nodes) is made of: the loader here refuses
the first anchor or alias it meets, so such a file is one error line in milliseconds. Every
file is read through ``read_capped``, which refuses a file over its cap before reading it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent
from yaml.nodes import Node

from core.errors import InputError, NotFoundError

MIB = 1 << 20
PLAN_MAX_BYTES = 256 * MIB  # a plan of tens of thousands of VMs is tens of MiB
MAP_MAX_BYTES = 16 * MIB
DESCRIPTOR_MAX_BYTES = 64 * MIB  # an OVF or VMX descriptor is kilobytes

# libyaml's C parser when PyYAML was built with it: several times faster on large plans
_BASE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class UntrustedYamlError(yaml.YAMLError):
    """The document uses YAML anchors or aliases, which no file we read needs."""


class NoAliasLoader(_BASE_LOADER):  # type: ignore[misc,valid-type]
    """A safe loader that refuses anchors and aliases (the parser may be libyaml's; composing is ours)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        Composer.__init__(self)

    # Composer's own document walk, over the (C or Python) parser's events, with one change:
    get_single_node = Composer.get_single_node
    get_node = Composer.get_node
    check_node = Composer.check_node
    compose_document = Composer.compose_document
    compose_scalar_node = Composer.compose_scalar_node
    compose_sequence_node = Composer.compose_sequence_node
    compose_mapping_node = Composer.compose_mapping_node

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            raise UntrustedYamlError(f"YAML aliases are not allowed (alias *{event.anchor})")
        if isinstance(event, (ScalarEvent, CollectionStartEvent)) and event.anchor is not None:
            raise UntrustedYamlError(f"YAML anchors are not allowed (anchor &{event.anchor})")
        node: Node = Composer.compose_node(self, parent, index)
        return node


def load_yaml(text: str) -> Any:
    """One YAML document, refusing anchors and aliases (raises yaml.YAMLError)."""
    if "&" not in text and "*" not in text:
        # Neither an anchor (&) nor an alias (*) can be spelled without its character: libyaml
        # composes the whole document (twice as fast as composing node by node in Python).
        return yaml.load(text, Loader=_BASE_LOADER)
    loader = NoAliasLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_capped(path: Path, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file no larger than ``max_bytes``; anything else is one error line."""
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            if info.st_size > max_bytes:
                raise InputError(
                    f"{what} {path} is {info.st_size >> 20} MiB: larger than the {max_bytes >> 20} MiB allowed"
                )
            if stat.S_ISREG(info.st_mode):
                data = handle.read(info.st_size + 1)  # +1: a file that grew while we read it shows
            else:  # a pipe or a device: in pieces, never more than the cap
                pieces, total = [], 0
                while total <= max_bytes and (piece := handle.read(min(1 << 20, max_bytes + 1 - total))):
                    pieces.append(piece)
                    total += len(piece)
                data = b"".join(pieces)
    except FileNotFoundError:
        raise NotFoundError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"cannot read {what} {path}: it is a directory, not a file") from None
    except OSError as error:
        raise InputError(f"cannot read {what} {path}: {error.strerror or type(error).__name__}") from None
    if len(data) > max_bytes:  # a pipe or a file that grew while we read it
        raise InputError(f"{what} {path} is larger than the {max_bytes >> 20} MiB allowed")
    return data
