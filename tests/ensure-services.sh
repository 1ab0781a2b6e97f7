#!/usr/bin/env bash
# Starts the local Redis and MariaDB when they are installed but stopped, and installs Debian's
# chromium, docker-compose and wrk when missing. With CI=true anything missing is an
# error; otherwise the tests that need it skip themselves.
set -u

redis_up() { python3 - <<'PY'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", 6379), timeout=1)
    s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}
mariadb_up() { python3 -c 'import socket; socket.create_connection(("127.0.0.1", 3306), timeout=1)' 2>/dev/null; }

wait_for() {  # name, check function
  for _ in $(seq 1 50); do "$2" && return 0; sleep 0.2; done
  return 1
}

if ! redis_up && command -v redis-server >/dev/null; then
  echo "starting redis-server"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for redis redis_up
fi
if ! mariadb_up && command -v mariadbd >/dev/null; then
  echo "starting mariadbd"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  wait_for mariadb mariadb_up
fi

# Debian packages the tests run for real, installed when missing (as root, with apt-get):
# headless Chromium (the results page), docker-compose v1 (validates docker-compose.yml
# offline, no engine needed) and wrk (the benchmark's smoke test).
install_if_missing() {  # a command, from the Debian package of the same name
  if ! command -v "$1" >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing $1"
    apt-get install -y -q "$1" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$1" >/dev/null 2>&1; }
  fi
}
TOOLS="chromium docker-compose wrk"
for tool in $TOOLS; do
  install_if_missing "$tool"
done

status=0
redis_up || { echo "Redis is not reachable on 127.0.0.1:6379"; status=1; }
mariadb_up || { echo "MariaDB is not reachable on 127.0.0.1:3306"; status=1; }
for tool in $TOOLS; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed"; status=1; }
done
if [ "$status" -ne 0 ] && [ "${CI:-}" = "true" ]; then
  echo "CI=true: the tests need Redis, MariaDB and $TOOLS" >&2
  exit 1
fi
exit 0
