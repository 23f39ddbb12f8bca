#!/usr/bin/env bash
# Installs (when root) and starts the real peers the test suite talks to: PostgreSQL, Mosquitto,
# FFmpeg's ffprobe, GStreamer's RTSP server, systemd-analyze. Safe to run again: it only acts on
# what is missing or stopped. Without root it only reports, and the affected tests skip visibly.
set -u

PACKAGES=(
  postgresql mosquitto ffmpeg systemd chromium nftables
  python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad
  freeradius-utils php-cli opennds iptables
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "test peers: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || echo "test peers: apt-get failed; the tests that need ${missing[*]} will skip with a reason" >&2
  else
    echo "test peers: not root, cannot install ${missing[*]}; run 'sudo make test' or install them" >&2
  fi
fi

# openNDS is a test peer only (run inside namespaces by tests/test_gateway_opennds.py), never a
# service of this machine: its package enables one.
if [ "$(id -u)" -eq 0 ] && command -v systemctl >/dev/null 2>&1 && systemctl is-enabled opennds >/dev/null 2>&1; then
  systemctl disable --now opennds >/dev/null 2>&1 || true
fi

# PostgreSQL: start every installed cluster that is down.
if command -v pg_lsclusters >/dev/null 2>&1; then
  if ! pg_lsclusters --no-header 2>/dev/null | grep -q .; then
    ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$ver" ] && [ "$(id -u)" -eq 0 ] && pg_createcluster "$ver" main >/dev/null 2>&1
  fi
  pg_lsclusters --no-header 2>/dev/null | while read -r ver name _port status _rest; do
    if [ "$status" != "online" ] && [ "$(id -u)" -eq 0 ]; then
      pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" start || echo "test peers: PostgreSQL $ver/$name did not start" >&2
    fi
  done
  # Tests connect over TCP as postgres without a password, as on the developers' machines.
  if [ "$(id -u)" -eq 0 ] && ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
    for hba in /etc/postgresql/*/main/pg_hba.conf; do
      [ -f "$hba" ] || continue
      grep -q "appliance-tests" "$hba" || sed -i '1i host all all 127.0.0.1/32 trust # appliance-tests\nhost all all ::1/128 trust # appliance-tests\nlocal all all trust # appliance-tests' "$hba"
    done
    pg_lsclusters --no-header | while read -r ver name _rest; do
      pg_ctlcluster --skip-systemctl-redirect "$ver" "$name" reload >/dev/null 2>&1 || true
    done
  fi
fi

# Mosquitto: the alert tests publish to 127.0.0.1:1883.
if command -v mosquitto >/dev/null 2>&1 && ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  [ "$(id -u)" -eq 0 ] && mosquitto -d -c /etc/mosquitto/mosquitto.conf
fi
exit 0
