#!/bin/sh
# mmdebstrap --customize-hook: shape the chroot "$1" like a Debian 12 VM installed on VMware.
#   $2: the NIC name the VMware guest configured (ens192), $3: its static address (CIDR), $4: report script
set -eu
root=$1 nic=$2 address=$3 report=$4

echo vmware-debian >"$root/etc/hostname"
cat >"$root/etc/network/interfaces" <<CONF
# written for VMware's PCI slot name of the vmxnet3 NIC
auto lo
iface lo inet loopback

auto $nic
iface $nic inet static
    address $address
CONF

# initramfs-tools with only VMware's storage drivers (and the root file system): no virtio
mkdir -p "$root/etc/initramfs-tools/conf.d"
echo "MODULES=list" >"$root/etc/initramfs-tools/conf.d/vmware-storage.conf"
printf '%s\n' vmw_pvscsi mptspi ahci sd_mod ext4 >>"$root/etc/initramfs-tools/modules"

# GRUB: serial console, no menu wait; rootdelay makes a missing root disk fail in 20 s, not 3 min
cat >>"$root/etc/default/grub" <<CONF
GRUB_TIMEOUT=0
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200 rootdelay=20 systemd.show_status=true"
GRUB_TERMINAL=console
CONF

install -m 0755 "$report" "$root/usr/local/sbin/migrator-report"
cat >"$root/etc/systemd/system/migrator-report.service" <<CONF
[Unit]
Description=Report the root device, NICs, drivers and VMware tools on ttyS0
After=networking.service

[Service]
Type=simple
ExecStart=/usr/local/sbin/migrator-report

[Install]
WantedBy=multi-user.target
CONF
chroot "$root" systemctl enable migrator-report.service open-vm-tools.service >/dev/null 2>&1
echo "root:migrator" | chroot "$root" chpasswd

# small: drop the kernel modules a VM on VMware or KVM never loads, and docs
for kernel in "$root"/lib/modules/*; do
  version=${kernel##*/}
  for dir in drivers/gpu drivers/media drivers/net/wireless drivers/infiniband sound drivers/staging \
    drivers/bluetooth net/wireless net/mac80211 net/bluetooth drivers/iio drivers/usb drivers/hid \
    drivers/isdn drivers/mtd drivers/input/touchscreen drivers/input/joystick drivers/misc drivers/thunderbolt \
    drivers/net/can drivers/net/usb drivers/net/wwan drivers/platform drivers/hwmon drivers/watchdog \
    drivers/nfc drivers/leds drivers/spi drivers/i2c drivers/mfd drivers/regulator drivers/pinctrl \
    drivers/power drivers/rtc drivers/crypto drivers/edac drivers/md drivers/target drivers/nvme \
    drivers/scsi/qla2xxx drivers/scsi/lpfc drivers/scsi/mpt3sas drivers/scsi/bfa drivers/scsi/be2iscsi \
    drivers/scsi/qedf drivers/scsi/qedi drivers/scsi/megaraid drivers/scsi/aacraid drivers/scsi/smartpqi \
    fs/btrfs fs/xfs fs/ocfs2 fs/gfs2 fs/nfs fs/nfsd fs/smb fs/cifs fs/ceph fs/f2fs fs/nilfs2 fs/ubifs \
    fs/jfs fs/reiserfs fs/bcachefs fs/dlm fs/ntfs3 fs/afs fs/coda fs/orangefs net/ceph net/sunrpc \
    net/netfilter net/ipv4/netfilter net/ipv6/netfilter net/bridge/netfilter; do
    rm -rf "${kernel:?}/kernel/$dir"
  done
  for vendor in "$kernel"/kernel/drivers/net/ethernet/*; do
    case ${vendor##*/} in vmware | intel) ;; *) rm -rf "$vendor" ;; esac
  done
  chroot "$root" depmod -a "$version"
done
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/* "$root"/usr/share/info/*
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/*
chroot "$root" update-initramfs -u -k all >/dev/null
