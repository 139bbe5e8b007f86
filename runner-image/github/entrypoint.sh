#!/bin/sh
# Entrypoint of runner-orchestrator's GitHub Actions runner image (also the test image's
# /usr/local/bin/ro-entrypoint). Duties from docs/runner-contract.md:
#
# 1. If RUNNER_CREDENTIAL_FILE names a readable file, export its content under the name in
#    RUNNER_CREDENTIAL_ENV and delete the file, so the secret lives only in this process
#    tree and never in `docker inspect`.
# 2. Leave ACTIONS_RUNNER_INPUT_JITCONFIG (and ACTIONS_RUNNER_INPUT_TOKEN) in the
#    environment: the runner reads every ACTIONS_RUNNER_INPUT_<ARG> as its --<arg>, adds
#    the value to its secret masker and removes the variable from its own environment
#    before any job starts (actions/runner, src/Runner.Listener/CommandSettings.cs). The
#    JIT config is never put on a command line, where every process on the host could
#    read it (ps, /proc/<pid>/cmdline).
# 3. Run the command as a child, forward SIGTERM/SIGINT to it, exit with its exit code.
#
# POSIX sh on purpose: the same file runs under busybox ash in the test image.

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
    set -- /home/runner/run.sh
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
