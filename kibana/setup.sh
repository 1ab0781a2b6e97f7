#!/bin/sh
# One-shot: install the events' retention policy in Elasticsearch (the index templates name
# it), import the saved objects in Kibana (data views, Lens visualizations, the errors
# search, the dashboard) and make the request events' data view the default. Each call is
# retried until it is answered, for up to WAIT_SECONDS in all: Elasticsearch and Kibana may
# still be booting. Exits non-zero after that (compose starts it again: restart on-failure).
# Idempotent: the policy is replaced, and overwrite=true replaces objects with the same ids.
set -eu
KIBANA_URL="${KIBANA_URL:-http://kibana:5601}"
SAVED_OBJECTS="${SAVED_OBJECTS:-/setup/ml_api.ndjson}"
WAIT_SECONDS="${WAIT_SECONDS:-600}"
ELASTICSEARCH_URL="${ELASTICSEARCH_URL:-http://elasticsearch:9200}"
RETENTION_POLICY="${RETENTION_POLICY:-/ilm/ml-api-retention.json}"
RETENTION_DAYS="${RETENTION_DAYS:-14}"

case "$RETENTION_DAYS" in
  ''|*[!0-9]*) echo "RETENTION_DAYS must be a whole number of days" >&2; exit 1 ;;
esac
started=$(date +%s)
# wait_until WHAT EXPECTED CURL-ARGS...: repeat the call while there is no answer or a 5xx
# (still booting) until it answers EXPECTED; any other answer is a failure at once.
wait_until() {
  what="$1"; expected="$2"; shift 2
  while :; do
    status=$(curl -s -o /dev/null -w '%{http_code}' "$@" || true)
    [ "$status" = "$expected" ] && return 0
    case "$status" in
      000|5??) ;;
      *) echo "$what failed (HTTP $status)" >&2; exit 1 ;;
    esac
    if [ $(( $(date +%s) - started )) -ge "$WAIT_SECONDS" ]; then
      echo "$what: no answer $expected within ${WAIT_SECONDS}s (last: HTTP $status)" >&2
      exit 1
    fi
    sleep 2
  done
}

policy=$(sed "s/\${RETENTION_DAYS}/$RETENTION_DAYS/" "$RETENTION_POLICY")
wait_until "installing the retention policy" 200 -X PUT \
  "$ELASTICSEARCH_URL/_ilm/policy/ml-api-retention" \
  -H 'Content-Type: application/json' --data "$policy"
echo "retention policy installed: events are deleted after $RETENTION_DAYS days"

echo "waiting for Kibana at $KIBANA_URL"
wait_until "Kibana's status" 200 "$KIBANA_URL/api/status"

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
wait_until "setting the default data view" 200 -X POST "$KIBANA_URL/api/data_views/default" \
  -H "kbn-xsrf: true" -H 'Content-Type: application/json' \
  --data '{"data_view_id": "ml-api-requests", "force": true}'
echo "default data view: ml-api-requests"
