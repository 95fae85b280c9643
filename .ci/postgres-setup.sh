#!/usr/bin/env bash
# Provide a PostgreSQL server on 127.0.0.1 for the checkpointer tests, and print its URL's pieces.
# Idempotent: an installed server, a running cluster, the role and the database are reused.
set -euo pipefail

PGUSER_NAME="archsmith"
PGPASS="archsmith-ci"
PGDB="archsmith_test"

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -q "^${version} main$"; then
    pg_createcluster "${version}" main >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="${version}" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    pg_ctlcluster "${version}" main start
fi
for _ in $(seq 1 30); do
    su postgres -c "pg_isready -q -h 127.0.0.1" && break
    sleep 1
done
su postgres -c "pg_isready -h 127.0.0.1"
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='${PGUSER_NAME}'\"" | grep -q 1 \
    || su postgres -c "psql -qc \"CREATE ROLE ${PGUSER_NAME} LOGIN PASSWORD '${PGPASS}'\""
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='${PGDB}'\"" | grep -q 1 \
    || su postgres -c "createdb -O ${PGUSER_NAME} ${PGDB}"
echo "postgresql ${version} ready: postgresql://${PGUSER_NAME}:***@127.0.0.1:5432/${PGDB}"
