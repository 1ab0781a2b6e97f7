#!/bin/sh
# One-shot: wait for Kibana, then import the saved objects (data views, visualizations,
# dashboard). Idempotent: overwrite=true replaces objects with the same ids.
set -eu
KIBANA_URL="${KIBANA_URL:-http://kibana:5601}"
SAVED_OBJECTS="${SAVED_OBJECTS:-/setup/ml_api.ndjson}"
WAIT_SECONDS="${WAIT_SECONDS:-300}"

echo "waiting for Kibana at $KIBANA_URL (up to ${WAIT_SECONDS}s)"
waited=0
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$KIBANA_URL/api/status" || true)" = "200" ]; do
  if [ "$waited" -ge "$WAIT_SECONDS" ]; then
    echo "Kibana did not become ready" >&2
    exit 1
  fi
  sleep 2
  waited=$((waited + 2))
done

response=$(curl -s -X POST "$KIBANA_URL/api/saved_objects/_import?overwrite=true" \
  -H "kbn-xsrf: true" --form "file=@$SAVED_OBJECTS")
echo "$response"
if echo "$response" | grep -Eq '"success" *: *true'; then
  echo "saved objects imported"
else
  echo "import failed" >&2
  exit 1
fi
