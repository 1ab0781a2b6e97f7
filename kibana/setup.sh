#!/bin/sh
# One-shot: install the events' retention policy in Elasticsearch (the index templates name
# it), wait for Kibana, import the saved objects (data views, Lens visualizations, the errors
# search, the dashboard) and make the request events' data view the default. Idempotent: the policy is replaced, and overwrite=true replaces objects with
# the same ids.
set -eu
KIBANA_URL="${KIBANA_URL:-http://kibana:5601}"
SAVED_OBJECTS="${SAVED_OBJECTS:-/setup/ml_api.ndjson}"
WAIT_SECONDS="${WAIT_SECONDS:-300}"
ELASTICSEARCH_URL="${ELASTICSEARCH_URL:-http://elasticsearch:9200}"
RETENTION_POLICY="${RETENTION_POLICY:-/ilm/ml-api-retention.json}"
RETENTION_DAYS="${RETENTION_DAYS:-14}"

case "$RETENTION_DAYS" in
  ''|*[!0-9]*) echo "RETENTION_DAYS must be a whole number of days" >&2; exit 1 ;;
esac
policy=$(sed "s/\${RETENTION_DAYS}/$RETENTION_DAYS/" "$RETENTION_POLICY")
status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
  "$ELASTICSEARCH_URL/_ilm/policy/ml-api-retention" \
  -H 'Content-Type: application/json' --data "$policy" || true)
if [ "$status" != "200" ]; then
  echo "installing the retention policy failed (HTTP $status)" >&2
  exit 1
fi
echo "retention policy installed: events are deleted after $RETENTION_DAYS days"

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

# The request events' data view is the one Discover and Lens open with.
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$KIBANA_URL/api/data_views/default" \
  -H "kbn-xsrf: true" -H 'Content-Type: application/json' \
  --data '{"data_view_id": "ml-api-requests", "force": true}' || true)
if [ "$status" != "200" ]; then
  echo "setting the default data view failed (HTTP $status)" >&2
  exit 1
fi
echo "default data view: ml-api-requests"
