#!/bin/sh
# The official image's `healthcheck.sh --connect --innodb_initialized`, for this stand-in: the
# server answers on its TCP port, where it listens only once initialisation is done, and
# InnoDB is up.
set -eu
mariadb -h 127.0.0.1 -uroot -p"${MARIADB_ROOT_PASSWORD}" -N -e \
  "SELECT 1 FROM information_schema.ENGINES WHERE ENGINE='InnoDB' AND SUPPORT IN ('YES','DEFAULT')" \
  | grep -q 1
