#!/bin/sh
# Register swarmkeep's Temporal namespace once the server answers (temporalio/server does not create one).
# Runs in temporalio/admin-tools; safe to run again.
set -eu

: "${TEMPORAL_ADDRESS:?TEMPORAL_ADDRESS (host:port of the frontend) is required}"
NAMESPACE="${NAMESPACE:-default}"
RETENTION="${RETENTION:-168h}"

attempt=0
until temporal operator cluster health --address "${TEMPORAL_ADDRESS}" >/dev/null 2>&1; do
    attempt=$((attempt + 1))
    [ "${attempt}" -lt 60 ] || { echo "Temporal at ${TEMPORAL_ADDRESS} did not become healthy" >&2; exit 1; }
    sleep 2
done

if temporal operator namespace describe --namespace "${NAMESPACE}" --address "${TEMPORAL_ADDRESS}" >/dev/null 2>&1; then
    echo "namespace ${NAMESPACE} exists"
else
    temporal operator namespace create --namespace "${NAMESPACE}" --retention "${RETENTION}" \
        --address "${TEMPORAL_ADDRESS}"
    echo "namespace ${NAMESPACE} created (retention ${RETENTION})"
fi
