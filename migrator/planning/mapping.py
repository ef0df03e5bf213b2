"""Network and storage maps: which target each source network and datastore goes to.

From a YAML file ``{networks: {SRC: pod|ignore|multus:ns/name}, storage: {DATASTORE: CLASS}}``
(a storage entry may also be ``{storageClass: CLASS, maxVolumeSize: 2Ti}``) and/or the
repeatable flags ``--network SRC=TARGET`` and ``--storage DS=CLASS``; flags win over the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core import untrusted
from core.errors import InputError
from core.plan import NetworkMapping, NetworkTarget, StorageMapping
from core.quantity import parse_quantity

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass
class Maps:
    """The user's maps, plus the defaults for what they leave out."""

    networks: dict[str, NetworkMapping] = field(default_factory=dict)
    storage: dict[str, StorageMapping] = field(default_factory=dict)
    default_network: NetworkTarget | None = None  # None: first NIC on pod, the rest need a map
    default_storage_class: str | None = None  # None: the cluster's default StorageClass

    @property
    def network_map_given(self) -> bool:
        return bool(self.networks)

    @property
    def storage_map_given(self) -> bool:
        return bool(self.storage)


def parse_size(value: Any, where: str) -> int:
    """A Kubernetes quantity ('2Ti', '500G', 1099511627776) → bytes; InputError naming ``where``."""
    try:
        return parse_quantity(value)
    except ValueError:
        raise InputError(f"{where}: {value!r} is not a size (e.g. 2Ti, 500Gi, 1000000000)") from None


def parse_network_target(source: str, text: str, where: str) -> NetworkMapping:
    value = str(text).strip()
    if value in (NetworkTarget.POD.value, NetworkTarget.IGNORE.value):
        return NetworkMapping(source=source, target=NetworkTarget(value))
    if value.startswith("multus:"):
        ref = value[len("multus:") :]
        namespace, sep, name = ref.partition("/")
        if sep and _DNS_LABEL.match(namespace) and _DNS_LABEL.match(name):
            return NetworkMapping(source=source, target=NetworkTarget.MULTUS, multus=ref)
        raise InputError(f"{where}: multus target {value!r} must be multus:NAMESPACE/NAME (lower-case DNS labels)")
    raise InputError(f"{where}: network {source!r} maps to {value!r}; expected pod, ignore or multus:NAMESPACE/NAME")


def _storage_class_ok(name: str) -> bool:
    return bool(re.match(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", name))


def parse_storage_target(datastore: str, value: Any, where: str) -> StorageMapping:
    max_bytes = None
    if isinstance(value, dict):
        unknown = set(value) - {"storageClass", "maxVolumeSize", "maxVolumeBytes"}
        if unknown:
            raise InputError(f"{where}: datastore {datastore!r} has unknown keys {sorted(unknown)}")
        storage_class = value.get("storageClass")
        limit = value.get("maxVolumeBytes", value.get("maxVolumeSize"))
        if limit is not None:
            max_bytes = parse_size(limit, f"{where}: datastore {datastore!r}")
    else:
        storage_class = value
    if not isinstance(storage_class, str) or not _storage_class_ok(storage_class):
        raise InputError(f"{where}: datastore {datastore!r} maps to {storage_class!r}, not a storage class name")
    return StorageMapping(datastore=datastore, storage_class=storage_class, max_volume_bytes=max_bytes)


def load_map_file(path: str) -> Maps:
    """Read a map file; anything unreadable or malformed is one InputError line."""
    if not Path(path).exists():
        raise InputError(f"map file {path} does not exist")
    try:
        text = untrusted.read_capped(Path(path), "map file", untrusted.MAP_MAX_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"cannot read map file {path}: not UTF-8 text") from None
    try:
        data = untrusted.load_yaml(text)  # safe, and refuses anchors and aliases (alias bombs)
    except untrusted.UntrustedYamlError as error:
        raise InputError(f"map file {path}: {error}: a map never needs them") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InputError(f"map file {path} is not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"map file {path} must be a mapping with 'networks' and/or 'storage'")
    unknown = set(data) - {"networks", "storage"}
    if unknown:
        raise InputError(f"map file {path}: unknown keys {sorted(unknown)}; expected 'networks' and 'storage'")
    maps = Maps()
    networks = data.get("networks") or {}
    storage = data.get("storage") or {}
    if not isinstance(networks, dict) or not isinstance(storage, dict):
        raise InputError(f"map file {path}: 'networks' and 'storage' must be mappings of SOURCE: TARGET")
    for source, target in networks.items():
        maps.networks[str(source)] = parse_network_target(str(source), target, f"map file {path}")
    for datastore, target in storage.items():
        maps.storage[str(datastore)] = parse_storage_target(str(datastore), target, f"map file {path}")
    return maps


def _split_flag(flag: str, option: str) -> tuple[str, str]:
    source, sep, target = flag.rpartition("=")
    if not sep or not source or not target:
        raise InputError(f"{option} {flag!r}: expected SOURCE=TARGET")
    return source, target


def build_maps(
    map_file: str | None = None,
    network_flags: tuple[str, ...] | list[str] = (),
    storage_flags: tuple[str, ...] | list[str] = (),
    default_network: str | None = None,
    default_storage_class: str | None = None,
) -> Maps:
    maps = load_map_file(map_file) if map_file else Maps()
    for flag in network_flags:
        source, target = _split_flag(flag, "--network")
        maps.networks[source] = parse_network_target(source, target, "--network")
    for flag in storage_flags:
        datastore, target = _split_flag(flag, "--storage")
        maps.storage[datastore] = parse_storage_target(datastore, target, "--storage")
    if default_network is not None:
        if default_network not in (NetworkTarget.POD.value, NetworkTarget.IGNORE.value):
            raise InputError(f"--default-network {default_network!r}: expected pod or ignore")
        maps.default_network = NetworkTarget(default_network)
    if default_storage_class is not None:
        if not _storage_class_ok(default_storage_class):
            raise InputError(f"--default-storage-class {default_storage_class!r} is not a storage class name")
        maps.default_storage_class = default_storage_class
    return maps
