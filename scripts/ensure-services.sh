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
start_if_down RabbitMQ 5672 as_root rabbitmq-server -detached || failed=1

# Real Nagios plugins for the `command` probe tests (Debian's monitoring-plugins-basic).
if [ ! -x /usr/lib/nagios/plugins/check_dummy ]; then
  echo "install monitoring-plugins-basic"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq monitoring-plugins-basic >/dev/null 2>&1; then
    as_root apt-get update -qq >/dev/null 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq monitoring-plugins-basic >/dev/null 2>&1 || { echo "FAIL cannot install monitoring-plugins-basic" >&2; failed=1; }
  fi
fi
[ -x /usr/lib/nagios/plugins/check_dummy ] && echo "ok   Nagios plugins in /usr/lib/nagios/plugins"

exit $failed
