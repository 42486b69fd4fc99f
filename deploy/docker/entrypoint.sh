#!/bin/sh
# ENTRYPOINT of the Edgewise image (deploy/docker/Dockerfile): the first argument (the
# image's CMD) picks the process; the rest is passed on. `exec` so the service itself is
# the container's main process and gets SIGTERM (it drains: health NOT_SERVING first).
set -eu

usage() {
    echo "usage: ROLE [ARGS...]   ROLE: command | query | gateway | cli | help" >&2
    echo "  command   python -m command_service" >&2
    echo "  query     python -m query_service" >&2
    echo "  gateway   python -m gateway ARGS   (e.g. 'gateway render --out FILE')" >&2
    echo "  cli       python -m cli ARGS       (e.g. 'cli tables create', 'cli health')" >&2
    echo "anything else is run as given (e.g. 'sh' for a shell)" >&2
}

[ "$#" -gt 0 ] || { usage; exit 2; }
role="$1"
shift
case "$role" in
    command) exec python -m command_service "$@" ;;
    query) exec python -m query_service "$@" ;;
    gateway) exec python -m gateway "$@" ;;
    cli) exec python -m cli "$@" ;;
    help | -h | --help) usage; exit 0 ;;
    *) exec "$role" "$@" ;;
esac
