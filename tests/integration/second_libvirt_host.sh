#!/bin/sh
# A second libvirt host on this machine, for the migration tests: libvirtd
# and virtlogd in a mount namespace of their own, where /etc/libvirt,
# /run/libvirt, /var/lib/libvirt, /var/cache/libvirt and /var/log/libvirt
# are directories under DIR. It has a host UUID of its own (libvirt refuses
# to migrate a guest to the host it runs on, by that UUID), no domains,
# pools or networks, and no cgroups (both daemons would name a guest's
# cgroup alike). It shares the machine's network: qemu's migration stream
# and libvirt's NBD server reach it on 127.0.0.1.
#
#   second_libvirt_host.sh DIR
#
# runs libvirtd in the foreground (the namespace lives as long as it does);
# its pid is the namespace's, for `nsenter --mount=/proc/PID/ns/mnt`.
# DIR/ready appears when it answers. SIGTERM ends it, and virtlogd with it.
set -eu
dir=$1
mkdir -p "$dir/etc/qemu" "$dir/run" "$dir/lib/images" "$dir/lib/qemu" "$dir/lib/boot" "$dir/cache/qemu" \
  "$dir/log/qemu"
chown libvirt-qemu:libvirt-qemu "$dir/lib/qemu"
chmod 0750 "$dir/lib/qemu"
# The machine's settings, without its domains, pools and networks.
for conf in /etc/libvirt/*.conf; do cp "$conf" "$dir/etc/"; done
cp -r /etc/libvirt/nwfilter "$dir/etc/" 2>/dev/null || true
echo "host_uuid = \"$(cat /proc/sys/kernel/random/uuid)\"" >>"$dir/etc/libvirtd.conf"
echo 'cgroup_controllers = [ ]' >>"$dir/etc/qemu.conf"

mkdir -p /run/libvirt
exec unshare --mount --propagation private sh -eu -c '
dir=$1
mount -t tmpfs -o mode=0755 kiln-second-libvirt /run/libvirt
mount --bind "$dir/etc" /etc/libvirt
mount --bind "$dir/lib" /var/lib/libvirt
mount --bind "$dir/cache" /var/cache/libvirt
mount --bind "$dir/log" /var/log/libvirt
virtlogd --daemon --pid-file "$dir/virtlogd.pid"
trap "kill \$(cat \"$dir/virtlogd.pid\") 2>/dev/null; kill \$daemon 2>/dev/null" TERM INT
libvirtd --pid-file "$dir/libvirtd.pid" &
daemon=$!
for _ in $(seq 300); do
  if virsh -c qemu:///system version >/dev/null 2>&1; then touch "$dir/ready"; break; fi
  sleep 0.1
done
wait $daemon || true
kill $(cat "$dir/virtlogd.pid") 2>/dev/null || true
' second-libvirt-host "$dir"
