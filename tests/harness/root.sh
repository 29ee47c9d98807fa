#!/bin/sh
# Builds a clean Debian root for the package tests (tests/deb.rs boots it as
# the throwaway systemd's lower layer instead of this machine's /):
#
#   root.sh SUITE DEST [PACKAGE...]
#
# debootstrap --variant=minbase of SUITE (bookworm, bullseye) into DEST with
# systemd as init, dbus and the few tools the tests drive (curl, man, ps,
# ss). Each PACKAGE is not installed but downloaded, with what it depends
# on, into the root's apt cache, next to the root's package lists: apt in
# the sandbox, which has no network, then resolves a .deb's Depends from
# Debian's real packages, exactly as on a VM. The mirror is the one this
# machine's apt uses. A finished root is kept (DEST/.complete) and reused;
# delete DEST to build it again.
set -eu
SUITE=$1
DEST=$2
shift 2
[ -f "$DEST/.complete" ] && exit 0
export DEBIAN_FRONTEND=noninteractive
if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends debootstrap
fi
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -n 1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || { echo "root.sh: no Debian mirror in this machine's apt sources" >&2; exit 1; }
tmp="$DEST.tmp"
rm -rf "$tmp"
mkdir -p "$(dirname "$DEST")"
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,curl,ca-certificates,man-db,procps,iproute2 \
    "$SUITE" "$tmp" "$mirror" >"$tmp.log" 2>&1 || { tail -n 30 "$tmp.log" >&2; exit 1; }
echo "deb $mirror $SUITE main" >"$tmp/etc/apt/sources.list"
cp /etc/resolv.conf "$tmp/etc/resolv.conf"
chroot "$tmp" apt-get update -qq
if [ $# -gt 0 ]; then
    # With their Recommends, as a plain `apt install` on a VM takes them.
    chroot "$tmp" apt-get install -y -qq --download-only "$@"
fi
# A clean machine's identity is its own: systemd makes one at first boot.
: >"$tmp/etc/machine-id"
rm -f "$tmp/etc/resolv.conf" "$tmp.log"
mv "$tmp" "$DEST"
touch "$DEST/.complete"
