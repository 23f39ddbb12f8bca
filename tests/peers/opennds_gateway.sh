#!/bin/sh
# Runs Debian's openNDS in the foreground, for tests, inside a gateway namespace and a private
# mount namespace of its own:
#     ip netns exec <gw> unshare --mount --propagation private sh opennds_gateway.sh CONFIG LEASE
# /tmp becomes a tmpfs of this openNDS alone (its socket, its client files), holding:
# - the DHCP lease line LEASE in /tmp/dhcp.leases, where openNDS checks that a client's address
#   was handed out by DHCP ("IP not allocated by dhcp" otherwise);
# - iptables-legacy as `iptables` first on PATH: openNDS 9.10's FORWARD set-up fails on the
#   nft-backed iptables ("Operation not supported"), and switching the machine's alternative
#   would change every other program's iptables.
set -eu
conf="$(cat "$1")"
lease="$2"
mount -t tmpfs tmpfs /tmp
mkdir /tmp/bin
for tool in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
  ln -s "/usr/sbin/$(echo "$tool" | sed 's/tables/tables-legacy/')" "/tmp/bin/$tool"
done
printf '%s\n' "$conf" > /tmp/opennds.conf
printf '%s\n' "$lease" > /tmp/dhcp.leases
PATH="/tmp/bin:$PATH" exec opennds -f -d 2 -c /tmp/opennds.conf
