#!/bin/sh
# Entrypoint of runner-orchestrator's GitLab runner image. Duties from
# docs/runner-contract.md:
#
# 1. If RUNNER_CREDENTIAL_FILE names a readable file, export its content under the name in
#    RUNNER_CREDENTIAL_ENV and delete the file, so the secret lives only in this process
#    tree and never in `docker inspect`.
# 2. Run the command as a child, forward SIGTERM/SIGINT to it, exit with its exit code.
#
# POSIX sh: the gitlab-runner images (Ubuntu and Alpine flavours) both have /bin/sh.

if [ -n "${RUNNER_CREDENTIAL_FILE:-}" ] && [ -r "$RUNNER_CREDENTIAL_FILE" ]; then
    name=${RUNNER_CREDENTIAL_ENV:-}
    case $name in
        "" | [0-9]* | *[!A-Za-z0-9_]*)
            echo "entrypoint: RUNNER_CREDENTIAL_ENV='$name' is not a valid variable name" >&2
            exit 64
            ;;
    esac
    value=$(cat "$RUNNER_CREDENTIAL_FILE")
    export "$name=$value"
    unset value
    rm -f "$RUNNER_CREDENTIAL_FILE" 2>/dev/null || true
fi
unset RUNNER_CREDENTIAL_FILE

if [ $# -eq 0 ]; then
    echo "entrypoint: no command given (the daemon passes gitlab-runner run-single ...)" >&2
    exit 64
fi

# Background child + wait, so the trap runs while the child works. A non-interactive
# shell starts background commands with SIGINT ignored, hence SIGTERM for both signals.
"$@" &
child=$!
forwarded=0
# shellcheck disable=SC2317  # invoked by the trap
forward() {
    forwarded=1
    kill -s "$1" "$child" 2>/dev/null
}
trap 'forward TERM' TERM INT
while :; do
    forwarded=0
    wait "$child"
    status=$?
    # wait returned because of a trapped signal, not because the child ended: wait again
    [ "$forwarded" = 1 ] || break
done
exit "$status"
