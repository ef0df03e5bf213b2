"""Network identity: the name each NIC had on VMware, pinned to its MAC inside the guest. Pure.

On vSphere a NIC in PCI slot N (``ethernetX.pciSlotNumber``) is ``ens<N>`` to systemd (the slot
comes from ACPI ``_SUN``). On KubeVirt the same NIC sits elsewhere on the PCI bus and is named
``enp1s0``, so configuration written for ``ens192`` (ifupdown, NetworkManager, netplan,
systemd-networkd, ifcfg) no longer applies. The guest script below checks that the guest's own
configuration names the interface, and only then pins name to MAC: a systemd ``.link`` file
where udev is systemd's, a udev rule otherwise. Pinning a name the guest never configured could
break a guest that names its NICs differently (``net.ifnames=0``), so such NICs are left alone
with a warning.
"""

from __future__ import annotations

import re

from converters.guest.model import NicPin

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
PIN_LINE = "MIGRATOR-PIN"
NOT_ROOT = f"{PIN_LINE}-NOT-ROOT"  # the filesystem the script ran in has no /etc/os-release nor /etc/fstab
LINK_FILE = "/etc/systemd/network/10-migrator-{name}.link"
UDEV_FILE = "/etc/udev/rules.d/70-migrator-net.rules"
# Where guests keep per-interface network configuration.
CONFIG_GLOBS = (
    "/etc/network/interfaces",
    "/etc/network/interfaces.d/*",
    "/etc/netplan/*.yaml",
    "/etc/netplan/*.yml",
    "/etc/NetworkManager/system-connections/*",
    "/etc/systemd/network/*.network",
    "/etc/sysconfig/network-scripts/ifcfg-*",
    "/etc/sysconfig/network/ifcfg-*",
)


def vmware_interface_name(pci_slot: int | None) -> str | None:
    """``ens<slot>``, as systemd names a NIC VMware placed in PCI slot ``pci_slot``."""
    if pci_slot is None or pci_slot <= 0:
        return None
    return f"ens{pci_slot}"


def pin_script(pins: list[tuple[str, str]], root: str = "") -> str:
    """A POSIX shell script run inside the guest (chroot) for (mac, name) pairs; prints one PIN line each.

    ``root`` prefixes every path (the guest's tree seen from elsewhere); the file names printed stay the guest's."""
    for mac, name in pins:
        if not _MAC.match(mac) or not _NAME.match(name):
            raise ValueError(f"bad NIC pin {mac} {name}")
    pairs = " ".join(f"{mac}={name}" for mac, name in pins)
    globs = " ".join(root + g for g in CONFIG_GLOBS)
    return f"""#!/bin/sh
# written by migrator: keep each NIC's VMware name, matched by MAC
set -u
root='{root}'
if [ ! -e "$root/etc/os-release" ] && [ ! -e "$root/usr/lib/os-release" ] && [ ! -e "$root/etc/fstab" ]; then
  echo "{NOT_ROOT}"
  exit 0
fi
if [ -d "$root/lib/systemd/network" ] || [ -d "$root/usr/lib/systemd/network" ]; then method=systemd-link
else method=udev-rule; fi
for pair in {pairs}; do
  mac=${{pair%%=*}} name=${{pair#*=}}
  files=""
  for file in {globs}; do
    [ -f "$file" ] || continue
    if grep -Eq "(^|[^A-Za-z0-9_.-])$name([^A-Za-z0-9_.-]|\\$)" "$file"; then
      files="$files${{files:+,}}${{file#"$root"}}"
    fi
  done
  if [ -z "$files" ]; then
    echo "{PIN_LINE} $mac $name none -"
    continue
  fi
  if [ "$method" = systemd-link ]; then
    mkdir -p "$root/etc/systemd/network"
    printf '%s\\n' '# written by migrator: the name this NIC had on VMware' '[Match]' "MACAddress=$mac" \\
      'Type=ether' '' '[Link]' "Name=$name" >"$root/etc/systemd/network/10-migrator-$name.link"
  else
    mkdir -p "$root/etc/udev/rules.d"
    printf 'SUBSYSTEM=="net", ACTION=="add", DRIVERS=="?*", ATTR{{address}}=="%s", ATTR{{type}}=="1", NAME="%s"\\n' \\
      "$mac" "$name" >>"$root{UDEV_FILE}"
  fi
  echo "{PIN_LINE} $mac $name $method $files"
done
"""


def parse_pins(output: str) -> tuple[list[NicPin], list[str]]:
    """The PIN lines the script printed → pins written, and warnings for NICs left alone."""
    pins: list[NicPin] = []
    warnings: list[str] = []
    for line in output.splitlines():
        parts = line.split(maxsplit=4)  # the files may hold spaces (NetworkManager's "Wired connection 1")
        if len(parts) != 5 or parts[0] != PIN_LINE:
            continue
        _, mac, name, method, files = parts
        if method == "none":
            warnings.append(
                f"NIC {mac}: the guest's network configuration does not name {name}; its name was not pinned"
            )
            continue
        pins.append(NicPin(mac=mac, name=name, method=method, configured_in=files.split(",")))
    return pins, warnings
