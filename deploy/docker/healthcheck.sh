#!/bin/sh
# HEALTHCHECK of the Edgewise image: check the Edgewise process that runs in this container,
# found by its command line (so it works whether or not an init process is PID 1).
#   command_service / query_service: grpc.health.v1 through `python -m cli health`, on the
#     loopback address of the port the service listens on (EDGEWISE_*_ADDR).
#   gateway: Envoy's admin /ready (EDGEWISE_EDGE_ADMIN_ADDR, loopback only).
# Exit 0 healthy, 1 not. Output goes to `docker inspect` only.
set -eu

# host:port -> the address to dial from inside the container: a wildcard host
# (0.0.0.0, [::], empty) becomes 127.0.0.1; a specific host is kept.
dial() {
    host="${1%:*}"
    port="${1##*:}"
    case "$host" in
        "" | 0.0.0.0 | "[::]" | "::") echo "127.0.0.1:$port" ;;
        *) echo "$1" ;;
    esac
}

# Is a `python -m MODULE` process running? (Compared in the shell: a grep would find itself.)
running() {
    for f in /proc/[0-9]*/cmdline; do
        cmd="$(tr '\0' ' ' <"$f" 2>/dev/null)" || continue
        case "$cmd" in *"-m $1 "*) return 0 ;; esac
    done
    return 1
}

if running command_service; then
    set -- --only command
    if [ -n "${EDGEWISE_COMMAND_ADDR:-}" ]; then set -- "$@" --command-addr "$(dial "$EDGEWISE_COMMAND_ADDR")"; fi
    exec python -m cli health "$@"
elif running query_service; then
    set -- --only query
    if [ -n "${EDGEWISE_QUERY_ADDR:-}" ]; then set -- "$@" --query-addr "$(dial "$EDGEWISE_QUERY_ADDR")"; fi
    exec python -m cli health "$@"
elif running gateway; then
    admin="$(dial "${EDGEWISE_EDGE_ADMIN_ADDR:-127.0.0.1:9901}")"
    exec python -c 'import sys, urllib.request
with urllib.request.urlopen(f"http://{sys.argv[1]}/ready", timeout=3) as reply:
    sys.exit(0 if reply.status == 200 else 1)' "$admin"
else
    echo "no Edgewise process (command_service, query_service, gateway) runs in this container" >&2
    exit 1
fi
