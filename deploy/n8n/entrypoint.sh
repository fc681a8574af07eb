#!/bin/sh
# Install the image's n8n-nodes-swarmkeep where n8n loads community packages, then start n8n as the image would.
set -eu

if [ -z "${N8N_ENCRYPTION_KEY:-}" ]; then
    echo "N8N_ENCRYPTION_KEY is required: set it in .env (see deploy/.env.example; openssl rand -hex 32)." >&2
    exit 1
fi

N8N_DIR="${N8N_USER_FOLDER:-${HOME:-/home/node}}/.n8n"
TARGET="${N8N_DIR}/nodes/node_modules/n8n-nodes-swarmkeep"
mkdir -p "${N8N_DIR}/nodes/node_modules"
rm -rf "${TARGET}.new"
cp -R /opt/swarmkeep/n8n-nodes-swarmkeep "${TARGET}.new"
rm -rf "${TARGET}"
mv "${TARGET}.new" "${TARGET}"

exec /docker-entrypoint.sh "$@"
