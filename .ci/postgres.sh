#!/usr/bin/env bash
# Install (if needed) and start Debian's PostgreSQL on 127.0.0.1:5432 with a test database.
# Prints the URL for TRAINYARD_TEST_POSTGRES_URL on stdout; everything else goes to stderr.
set -euo pipefail
{
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql
  fi
  ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
  if ! pg_lsclusters -h | grep -q "^$ver main"; then pg_createcluster "$ver" main; fi
  pg_ctlcluster "$ver" main start 2>/dev/null || true  # already running is fine
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 && break; sleep 1; done
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='trainyard'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"CREATE ROLE trainyard LOGIN SUPERUSER PASSWORD 'trainyard'\""
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='trainyard_test'\"" | grep -q 1 \
    || su postgres -c "createdb -O trainyard trainyard_test"
} >&2
echo "postgresql://trainyard:trainyard@127.0.0.1:5432/trainyard_test"
