#!/bin/sh
# Create Temporal's two databases on PostgreSQL and bring their schemas to the image's version.
# Runs in temporalio/admin-tools before the server starts; safe to run again (an upgrade of the image
# applies only the new schema versions).
set -eu

: "${POSTGRES_SEEDS:?POSTGRES_SEEDS (the PostgreSQL host) is required}"
: "${POSTGRES_USER:?POSTGRES_USER is required}"
: "${SQL_PASSWORD:?SQL_PASSWORD (the PostgreSQL password) is required}"
PORT="${DB_PORT:-5432}"
SCHEMA=/etc/temporal/schema/postgresql/v12

echo "waiting for PostgreSQL at ${POSTGRES_SEEDS}:${PORT} ..."
attempt=0
until nc -z -w 5 "${POSTGRES_SEEDS}" "${PORT}"; do
    attempt=$((attempt + 1))
    [ "${attempt}" -lt 60 ] || { echo "PostgreSQL did not answer at ${POSTGRES_SEEDS}:${PORT}" >&2; exit 1; }
    sleep 2
done

sql() {
    temporal-sql-tool --plugin postgres12 --ep "${POSTGRES_SEEDS}" -p "${PORT}" -u "${POSTGRES_USER}" "$@"
}

for pair in "${DBNAME:-temporal}:temporal" "${VISIBILITY_DBNAME:-temporal_visibility}:visibility"; do
    db="${pair%%:*}"
    schema="${pair#*:}"
    # `create` fails when the database exists (every start after the first); the schema steps below are
    # idempotent and fail loudly on any real problem.
    sql --db "${db}" create 2>/dev/null && echo "created database ${db}" || echo "database ${db} exists"
    sql --db "${db}" setup-schema -v 0.0
    sql --db "${db}" update-schema -d "${SCHEMA}/${schema}/versioned"
done
echo "Temporal schema ready"
