#!/usr/bin/env bash
# `make image`: the runtime's OCI image (controller, handler and launcher), from scratch, with Debian's
# mmdebstrap (a bookworm root filesystem: Python, libvirt, QEMU, OVMF, swtpm) and buildah (no Docker).
#
#   IMAGE=localhost/migrator-runtime:latest   the name to commit (what runtime/deploy/*.yaml and the
#                                             controller's launcher pods use)
#   OUTPUT=build/migrator-runtime.oci.tar     also written as an OCI archive (load it into a cluster's runtime)
#   MIRROR=http://deb.debian.org/debian
#   EXTRA_PACKAGES="pkg ..."                  Debian packages added to PACKAGE_GROUPS below
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE=${IMAGE:-localhost/migrator-runtime:latest}
OUTPUT=${OUTPUT:-build/migrator-runtime.oci.tar}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# Debian packages of the image, by what needs them. Add a group here (and say who needs it) rather than
# installing anything at run time: the image runs offline.
PACKAGE_GROUPS=(
  # the agents: Python, with libvirt's binding from Debian
  python3 python3-venv python3-pip python3-libvirt ca-certificates
  # the launcher: libvirt and QEMU (seabios comes with qemu-system-x86: the KVM probe boots through it), EFI, TPM
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils ovmf swtpm swtpm-tools
  # the launcher's networking and process tools
  iproute2 procps
  # guest conversion in the cluster (issue 13): virt-v2v-in-place, libguestfs with its appliance kernel, nbdkit
  virt-v2v libguestfs-tools nbdkit linux-image-amd64
  # the NIC-name pinning from the host, where the pod has /dev/fuse (else it pins in the appliance): debugfs
  e2fsprogs
)
# EXTRA_PACKAGES="a b": more packages for a local build, without editing the list
read -r -a extra <<< "${EXTRA_PACKAGES:-}"
PACKAGES=$(IFS=,; echo "${PACKAGE_GROUPS[*]} ${extra[*]}" | tr ' ' ',' | sed 's/,,*/,/g; s/,$//')

for tool in mmdebstrap buildah; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (run: make deps)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$OUTPUT")"

# The project's source as a clean tree (no venv, caches or build output), to build the wheel from: the image
# holds the installed package only (no tests, no testbed: what runs in a pod is what `pip install` ships).
mkdir "$work/src"
tar --exclude=./.venv --exclude=./.git --exclude=./build --exclude='*.egg-info' --exclude=__pycache__ \
    --exclude=./.pytest_cache --exclude=./.ruff_cache --exclude=./.cache -cf - . | tar -xf - -C "$work/src"

# Python packages: fetched here, with this host's pip and network settings (proxies, CA bundle), as wheels for
# bookworm's CPython 3.11 on x86_64; the image installs them offline. libvirt-python is Debian's python3-libvirt.
PYTHON=${PYTHON:-.venv/bin/python}
mkdir "$work/wheels"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheels" "$work/src"
mapfile -t deps < <("$PYTHON" - <<'PY'
import tomllib
for dep in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    if not dep.lower().startswith("libvirt-python"):
        print(dep)
PY
)
"$PYTHON" -m pip download --quiet --dest "$work/wheels" --only-binary=:all: --python-version 3.11 \
  --implementation cp --abi cp311 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux_2_28_x86_64 --platform linux_x86_64 "${deps[@]}"

echo "image: debootstrapping bookworm with mmdebstrap" >&2
mmdebstrap --variant=apt --mode=root --include="$PACKAGES" \
  --customize-hook="mkdir -p \"\$1/opt/migrator\" && cp -a '$work/wheels' \"\$1/opt/migrator/\"" \
  --customize-hook='chroot "$1" python3 -m venv --system-site-packages /opt/migrator/venv' \
  --customize-hook='chroot "$1" env -u PIP_FIND_LINKS -u PIP_CERT /opt/migrator/venv/bin/pip install --no-cache-dir --no-index --find-links /opt/migrator/wheels vsphere-migrator' \
  --customize-hook='rm -rf "$1/opt/migrator/wheels"' \
  --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
  bookworm "$work/rootfs.tar" "$MIRROR"

echo "image: assembling with buildah" >&2
ctr=$(buildah from scratch)
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
buildah add "$ctr" "$work/rootfs.tar" /
buildah config \
  --env PATH=/opt/migrator/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env PYTHONUNBUFFERED=1 \
  --workingdir /opt/migrator \
  --cmd '["python3", "-m", "runtime.controller"]' \
  --label org.opencontainers.image.title=migrator-runtime \
  --label org.opencontainers.image.description="vSphere-to-Kubernetes migrator: controller, handler, launcher" \
  "$ctr"
buildah commit --format oci "$ctr" "$IMAGE"
rm -f "$OUTPUT"
buildah push "$IMAGE" "oci-archive:$OUTPUT:$IMAGE"
echo "image: $IMAGE (also $OUTPUT)" >&2
