#!/usr/bin/env bash
# Make sure the services the test suite talks to are up, starting any that is down, and
# that the system packages the tests use (Nagios plugins) are installed.
# Commands are this machine's documented ones; each start is followed by a wait.
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do
    port_open "$port" && { echo "ok   $name on 127.0.0.1:$port"; return 0; }
    sleep 1
  done
  echo "FAIL $name did not come up on 127.0.0.1:$port" >&2
  return 1
}

start_if_down() {
  local name=$1 port=$2; shift 2
  if port_open "$port"; then echo "ok   $name on 127.0.0.1:$port"; return 0; fi
  echo "start $name"
  "$@" >/dev/null 2>&1 || true
  wait_port "$name" "$port"
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi; }

failed=0
start_if_down PostgreSQL 5432 as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql 2>/dev/null | head -n1)" main start || failed=1
start_if_down MariaDB 3306 as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || failed=1
start_if_down Redis 6379 as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log || failed=1

# Installs a Debian package when the file it provides is missing; apt's lists are
# refreshed only when a first try fails (a fresh machine has stale or no lists).
ensure_package() {
  local package=$1 provides=$2
  [ -e "$provides" ] && { echo "ok   $package ($provides)"; return 0; }
  echo "install $package"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null 2>&1; then
    as_root apt-get update -qq >/dev/null 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null 2>&1 \
      || { echo "FAIL cannot install $package" >&2; return 1; }
  fi
  [ -e "$provides" ] && echo "ok   $package ($provides)"
}

# Real peers the tests use: Nagios plugins for the `command` probe, OpenSSH's sshd and
# sftp-server for SFTP log archival, logrotate as the rotation peer.
ensure_package monitoring-plugins-basic /usr/lib/nagios/plugins/check_dummy || failed=1
ensure_package openssh-server /usr/sbin/sshd || failed=1
ensure_package logrotate /usr/sbin/logrotate || failed=1
# Browser tests drive Debian's Chromium through its ChromeDriver (tests/e2e/browser).
ensure_package chromium /usr/bin/chromium || failed=1
ensure_package chromium-driver /usr/bin/chromedriver || failed=1
# WeasyPrint (PDF reports) loads Pango through ctypes, and needs a font to lay text out.
libdir="/usr/lib/$(uname -m)-linux-gnu"
ensure_package libpango-1.0-0 "$libdir/libpango-1.0.so.0" || failed=1
ensure_package libpangoft2-1.0-0 "$libdir/libpangoft2-1.0.so.0" || failed=1
ensure_package fonts-dejavu-core /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf || failed=1
# Only the benchmarks need GoAccess (the log-analysis peer).
if [ "${UPKEEP_BENCH_TOOLS:-0}" = 1 ]; then
  ensure_package goaccess /usr/bin/goaccess || failed=1
fi

exit $failed
