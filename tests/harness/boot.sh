#!/bin/sh
# Boots a throwaway systemd as PID 1 over an overlay of / (or of LOWER, a
# root of its own such as a debootstrapped Debian: tests/harness/root.sh).
# Run as: [LOWER=ROOT] unshare --pid --fork --mount --net --uts --ipc --propagation private boot.sh DIR [SRC:DST...]
# Every write lands in DIR/upper; DIR is removed by the caller after poweroff.
# Each SRC (the build's binaries) is bind-mounted at DST inside, so the
# sandbox runs the host's current files: the overlay may show a copy from
# before the last build, and a checkout under /tmp would be hidden by the
# sandbox's own /tmp (and by PrivateTmp= of the services).
set -eu
DIR=$1
shift
mkdir -p "$DIR/upper" "$DIR/work" "$DIR/root"
mount -t overlay overlay -o "lowerdir=${LOWER:-/},upperdir=$DIR/upper,workdir=$DIR/work" "$DIR/root"
mount -t proc proc "$DIR/root/proc"
mount --rbind /sys "$DIR/root/sys"
mount --rbind /dev "$DIR/root/dev"
mount -t tmpfs tmpfs "$DIR/root/run"
mount -t tmpfs tmpfs "$DIR/root/tmp"
for pair in "$@"; do
    src=${pair%%:*}
    dst=${pair#*:}
    mkdir -p "$DIR/root$dst"
    mount --bind "$src" "$DIR/root$dst"
done
cd "$DIR/root"
exec chroot . env container=oci /lib/systemd/systemd --system
