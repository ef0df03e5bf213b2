#!/bin/sh
# /init of the tiny migrator test guest (busybox initramfs). Everything it reports goes to
# the console (console=ttyS0): the marker, one `DISK <name> <bytes>` line per block device,
# one `NIC <ifname> <mac>` line per network interface, `END-OF-DEVICES`, then it behaves as
# `migrator.behaviour=` on the kernel command line says. It never needs the network.
/bin/busybox mkdir -p /proc /sys /dev /run /tmp /sbin /usr/bin /usr/sbin /etc/acpi/PWRF
/bin/busybox --install -s
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1

marker=MIGRATOR-GUEST-READY
behaviour=wait
for word in $(cat /proc/cmdline); do
    case "$word" in
        migrator.marker=*) marker="${word#migrator.marker=}" ;;
        migrator.behaviour=*) behaviour="${word#migrator.behaviour=}" ;;
    esac
done

# Modules in dependency order (written by the builder); a driver without its device is harmless.
kver="$(uname -r)"
while read -r module; do
    insmod "/lib/modules/$kver/$module" 2>/dev/null
done <"/lib/modules/$kver/load-order"

# ACPI power button (virsh shutdown, system_powerdown): busybox acpid maps the input event
# KEY_POWER to the handler ./PWRF/00000080 in its config directory.
cat >/etc/acpi/PWRF/00000080 <<'HANDLER'
#!/bin/sh
echo MIGRATOR-GUEST-SHUTDOWN >/dev/console
sync
poweroff -f
HANDLER
chmod 755 /etc/acpi/PWRF/00000080
# Started before anything is printed, so a press right after the marker is never lost; not at all
# for `ignore-acpi`, a guest whose OS ignores the power button (the hypervisor must destroy it).
[ "$behaviour" = ignore-acpi ] || acpid -c /etc/acpi -l /dev/null -p /run/acpid.pid

# Wait until the set of block devices and interfaces stops changing (disk scans are quick
# with scsi_mod.scan=sync, but PCI probing can still be finishing).
previous=""
stable=0
tries=0
while [ "$stable" -lt 3 ] && [ "$tries" -lt 40 ]; do
    current="$(ls /sys/block /sys/class/net 2>/dev/null | tr '\n' ' ')"
    if [ "$current" = "$previous" ]; then stable=$((stable + 1)); else stable=0; fi
    previous="$current"
    tries=$((tries + 1))
    sleep 0.1
done

# a newline first: the boot loader may leave terminal escapes without one on the console
echo
echo "$marker"
for dev in /sys/block/*; do
    name="${dev##*/}"
    case "$name" in loop* | ram* | zram*) continue ;; esac
    [ -r "$dev/size" ] || continue
    echo "DISK $name $(($(cat "$dev/size") * 512))"
done
for nic in /sys/class/net/*; do
    name="${nic##*/}"
    [ "$name" = lo ] && continue
    echo "NIC $name $(cat "$nic/address")"
done
echo "END-OF-DEVICES"

power_off() {
    echo "$1"
    sync
    poweroff -f
}

case "$behaviour" in
    wait | ignore-acpi) ;;
    poweroff)
        sleep 1
        power_off MIGRATOR-GUEST-POWEROFF
        ;;
    poweroff-after=*)
        sleep "${behaviour#poweroff-after=}"
        power_off MIGRATOR-GUEST-POWEROFF
        ;;
    crash)
        echo MIGRATOR-GUEST-CRASH
        # panic through sysrq: with a pvpanic device the hypervisor sees a guest crash;
        # without one the guest halts (panic=0).
        echo c >/proc/sysrq-trigger
        ;;
    *)
        echo "MIGRATOR-GUEST-UNKNOWN-BEHAVIOUR $behaviour"
        ;;
esac
# PID 1 must never exit.
while true; do sleep 3600; done
