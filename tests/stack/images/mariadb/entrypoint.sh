#!/bin/sh
# First start on an empty data directory: create the system tables, the root password, the
# MARIADB_DATABASE and MARIADB_USER, and run /docker-entrypoint-initdb.d/*.sql, on a server
# that listens on a private socket only (so the healthcheck cannot pass before it is done).
set -eu
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db >/dev/null
  socket=/run/mysqld/init.sock
  mariadbd --user=mysql --skip-networking --socket="$socket" &
  pid=$!
  until mariadb-admin --socket="$socket" ping >/dev/null 2>&1; do sleep 0.2; done
  {
    echo "CREATE USER IF NOT EXISTS 'root'@'%' IDENTIFIED BY '${MARIADB_ROOT_PASSWORD}';"
    echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '${MARIADB_ROOT_PASSWORD}';"
    if [ -n "${MARIADB_DATABASE:-}" ]; then
      echo "CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE}\`;"
    fi
    if [ -n "${MARIADB_USER:-}" ]; then
      echo "CREATE USER '${MARIADB_USER}'@'%' IDENTIFIED BY '${MARIADB_PASSWORD}';"
      [ -n "${MARIADB_DATABASE:-}" ] && \
        echo "GRANT ALL ON \`${MARIADB_DATABASE}\`.* TO '${MARIADB_USER}'@'%';"
    fi
  } | mariadb --socket="$socket" -uroot
  for script in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$script" ] || continue
    echo "running $script"
    mariadb --socket="$socket" -uroot -p"${MARIADB_ROOT_PASSWORD}" < "$script"
  done
  kill "$pid"
  wait "$pid" || true
fi
[ "$1" = mariadbd ] && set -- "$@" --user=mysql
exec "$@"
