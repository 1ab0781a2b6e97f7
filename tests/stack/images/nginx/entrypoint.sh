#!/bin/sh
set -eu
# Unlike the official image, only the first nameserver: podman 4 lists the host's servers
# after its own (aardvark-dns), and those answer "not found" for service names, which nginx,
# asking each server in turn, would turn into 502s. Docker lists 127.0.0.11 alone.
if [ "${NGINX_ENTRYPOINT_LOCAL_RESOLVERS:-}" ]; then
  NGINX_LOCAL_RESOLVERS=$(awk '/^nameserver/ { print $2; exit }' /etc/resolv.conf)
  export NGINX_LOCAL_RESOLVERS
fi
# Only variables that are set are replaced, so nginx's own $host and the like stay.
defined=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
for template in /etc/nginx/templates/*.template; do
  [ -e "$template" ] || continue
  name=$(basename "$template" .template)
  envsubst "$defined" < "$template" > "/etc/nginx/conf.d/$name"
done
exec "$@"
