#!/bin/sh
# Boots a throwaway systemd as PID 1 over an overlay of /.
# Run as: unshare --pid --fork --mount --net --uts --ipc --propagation private boot.sh DIR [PATH...]
# Every write lands in DIR/upper; DIR is removed by the caller after poweroff.
# Each PATH (the checkout, the build's target directory) is bind-mounted at
# the same place inside, so the sandbox sees the host's current files even
# where its own /tmp and /run would hide them, or where the overlay would
# show a copy from before the last build.
set -eu
DIR=$1
shift
mkdir -p "$DIR/upper" "$DIR/work" "$DIR/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$DIR/upper,workdir=$DIR/work" "$DIR/root"
mount -t proc proc "$DIR/root/proc"
mount --rbind /sys "$DIR/root/sys"
mount --rbind /dev "$DIR/root/dev"
mount -t tmpfs tmpfs "$DIR/root/run"
mount -t tmpfs tmpfs "$DIR/root/tmp"
for p in "$@"; do
    mkdir -p "$DIR/root$p"
    mount --bind "$p" "$DIR/root$p"
done
cd "$DIR/root"
exec chroot . env container=oci /lib/systemd/systemd --system
