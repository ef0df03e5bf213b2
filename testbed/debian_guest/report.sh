#!/bin/sh
# What the guest sees, printed on the first serial port once it is up (see build.py for the line formats).
systemctl is-system-running --wait >/dev/null 2>&1
state=$(systemctl is-system-running 2>/dev/null)
root=$(findmnt -no SOURCE /)
{
  echo
  echo "MIGRATOR-DEBIAN-REPORT"
  echo "ROOT $root $(readlink -f "$root")"
  for dir in /sys/class/net/*; do
    name=${dir##*/}
    [ "$name" = lo ] && continue
    addresses=$(ip -o -4 addr show dev "$name" | awk '{print $4}' | paste -sd, -)
    echo "NIC $name $(cat "$dir/address") ${addresses:--}"
  done
  echo "DRIVERS $(lsmod | awk 'NR > 1 {print $1}' | sort | paste -sd, -)"
  if dpkg-query -W -f='${Status}' open-vm-tools 2>/dev/null | grep -q "install ok installed"; then
    echo "OPEN-VM-TOOLS installed"
  else
    echo "OPEN-VM-TOOLS absent"
  fi
  echo "SYSTEM ${state:-unknown}"
  echo "MIGRATOR-DEBIAN-READY"
} >/dev/ttyS0 2>&1
