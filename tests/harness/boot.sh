#!/bin/sh
# Boots a throwaway systemd as PID 1 over an overlay of /.
# Run as: unshare --pid --fork --mount --net --uts --ipc --propagation private boot.sh DIR
# Every write lands in DIR/upper; DIR is removed by the caller after poweroff.
set -eu
DIR=$1
mkdir -p "$DIR/upper" "$DIR/work" "$DIR/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$DIR/upper,workdir=$DIR/work" "$DIR/root"
mount -t proc proc "$DIR/root/proc"
mount --rbind /sys "$DIR/root/sys"
mount --rbind /dev "$DIR/root/dev"
mount -t tmpfs tmpfs "$DIR/root/run"
mount -t tmpfs tmpfs "$DIR/root/tmp"
cd "$DIR/root"
exec chroot . env container=oci /lib/systemd/systemd --system
