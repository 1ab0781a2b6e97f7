#!/usr/bin/env bash
# Starts the local Redis and MariaDB when they are installed but stopped. With CI=true a
# service that cannot be reached is an error; otherwise the integration tests skip themselves.
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

status=0
redis_up || { echo "Redis is not reachable on 127.0.0.1:6379"; status=1; }
mariadb_up || { echo "MariaDB is not reachable on 127.0.0.1:3306"; status=1; }
if [ "$status" -ne 0 ] && [ "${CI:-}" = "true" ]; then
  echo "CI=true: the integration tests need both services" >&2
  exit 1
fi
exit 0
