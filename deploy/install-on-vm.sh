#!/bin/sh
# Runs on the VM, as root: installs the unitwatch .deb and checks that both
# services answer. A configuration already in /etc/unitwatch (written by
# cloud-init, or by an earlier install) is kept, without a prompt.
# deploy/azure-vm.sh copies this and the .deb over and runs it; it works on
# any Debian 12 or Ubuntu 22.04/24.04 host the same way:
#   sudo sh install-on-vm.sh ./unitwatch_0.1.0-1_amd64.deb
set -eu
deb=${1:?usage: install-on-vm.sh PATH/TO/unitwatch_VERSION_amd64.deb}
case $deb in /*|./*) ;; *) deb=./$deb ;; esac

export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    "$deb"

unitwatchd config check
for unit in unitwatch unitwatch-http; do
    i=0
    until systemctl is-active --quiet "$unit"; do
        i=$((i + 1))
        if [ "$i" -ge 50 ]; then
            systemctl status --no-pager "$unit" || true
            echo "install-on-vm.sh: $unit is not active" >&2
            exit 1
        fi
        sleep 0.2
    done
done
# The first answer may take a sweep; 200 (pass, warn) or 503 (fail) both
# mean the server and the daemon run.
i=0
while :; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -I http://127.0.0.1:8080/health || true)
    case $code in 200|503) break ;; esac
    i=$((i + 1))
    if [ "$i" -ge 50 ]; then
        echo "install-on-vm.sh: /health does not answer (last: $code)" >&2
        exit 1
    fi
    sleep 0.2
done
echo "unitwatch $(dpkg-query -W -f '${Version}' unitwatch) is running; HEAD /health: $code"
unitwatchd check || true
