#!/bin/sh
# Entrypoint of runner-orchestrator's runner images, GitLab and GitHub alike (and the
# test image's /usr/local/bin/ro-entrypoint). Duties from docs/runner-contract.md:
#
# 1. Export the credential under the name in RUNNER_CREDENTIAL_ENV, so the secret lives
#    only in this process tree and never in `docker inspect`: with RUNNER_CREDENTIAL_STDIN=1
#    read it as one line from stdin (exit 65 when none comes), else if
#    RUNNER_CREDENTIAL_FILE names a readable file read it and delete the file.
# 2. GitHub: leave ACTIONS_RUNNER_INPUT_JITCONFIG (and ACTIONS_RUNNER_INPUT_TOKEN) in the
#    environment: the runner reads every ACTIONS_RUNNER_INPUT_<ARG> as its --<arg>, adds
#    the value to its secret masker and removes the variable from its own environment
#    before any job starts (actions/runner, src/Runner.Listener/CommandSettings.cs). The
#    JIT config is never put on a command line, where every process on the host could
#    read it (ps, /proc/<pid>/cmdline).
# 3. Run the command as a child, forward SIGTERM/SIGINT to it, exit with its exit code.
#
# POSIX sh on purpose: the gitlab-runner images (Ubuntu and Alpine flavours), the
# actions-runner image and the test image's busybox ash all run it.

# credential_name: RUNNER_CREDENTIAL_ENV, refused (exit 64) unless it is a variable name.
credential_name() {
    case ${RUNNER_CREDENTIAL_ENV:-} in
        "" | [0-9]* | *[!A-Za-z0-9_]*)
            echo "entrypoint: RUNNER_CREDENTIAL_ENV='${RUNNER_CREDENTIAL_ENV:-}' is not a valid variable name" >&2
            exit 64
            ;;
    esac
}

if [ "${RUNNER_CREDENTIAL_STDIN:-}" = 1 ]; then
    credential_name
    # One line. The daemon writes it right after start and then closes stdin, so the read
    # ends at once, empty when the daemon died before writing. The timeout bounds a
    # container started without the daemon's attach, whose stdin would never close.
    if command -v timeout >/dev/null 2>&1; then
        value=$(timeout "${RUNNER_CREDENTIAL_TIMEOUT:-60}" head -n 1)
    else
        value=$(head -n 1)
    fi
    if [ -z "$value" ]; then
        echo "entrypoint: no credential on stdin (RUNNER_CREDENTIAL_STDIN=1)" >&2
        exit 65
    fi
    export "$RUNNER_CREDENTIAL_ENV=$value"
    unset value
elif [ -n "${RUNNER_CREDENTIAL_FILE:-}" ] && [ -r "$RUNNER_CREDENTIAL_FILE" ]; then
    credential_name
    value=$(cat "$RUNNER_CREDENTIAL_FILE")
    export "$RUNNER_CREDENTIAL_ENV=$value"
    unset value
    rm -f "$RUNNER_CREDENTIAL_FILE" 2>/dev/null || true
fi
unset RUNNER_CREDENTIAL_FILE RUNNER_CREDENTIAL_STDIN RUNNER_CREDENTIAL_TIMEOUT

if [ $# -eq 0 ]; then
    echo "entrypoint: no command given (the daemon passes one: gitlab-runner run-single ..., /home/runner/run.sh ...)" >&2
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
    kill -TERM "$child" 2>/dev/null
}
trap forward TERM INT
while :; do
    forwarded=0
    wait "$child"
    status=$?
    # wait returned because of a trapped signal, not because the child ended: wait again
    [ "$forwarded" = 1 ] || break
done
exit "$status"
