#!/bin/sh
# Test-image stand-in for actions-runner's run.sh, speaking the simulator's /_runner/
# endpoints (docs/runner-contract.md).
#
#   run.sh [--jitconfig BASE64]      (or env ACTIONS_RUNNER_INPUT_JITCONFIG)
#
# JIT: the config is base64 of flat JSON {url, runner_id, name, token}; take exactly one
# job, complete it, exit 0. Without a JIT config: use the .runner file config.sh wrote and
# take jobs until SIGTERM. On SIGTERM: abandon the current job (reported "cancelled"),
# POST /_runner/offline, exit 0.
# shellcheck source-path=SCRIPTDIR source=http.sh
. "${RO_LIB:-/usr/local/lib/runner-orchestrator}/http.sh"

home=${RUNNER_HOME:-/home/runner}
jit=${ACTIONS_RUNNER_INPUT_JITCONFIG:-}
while [ $# -gt 0 ]; do
    case $1 in
        --jitconfig) jit=$2; shift 2 ;;
        *) shift ;;
    esac
done

if [ -n "$jit" ]; then
    config=$(printf '%s' "$jit" | base64 -d 2>/dev/null) || { log "--jitconfig is not base64"; exit 1; }
    ephemeral=1
elif [ -r "$home/.runner" ]; then
    config=$(cat "$home/.runner")
    ephemeral=0
else
    log "not configured: no --jitconfig and no $home/.runner (run config.sh first)"
    exit 1
fi
json_val url "$config"
url=$JSON_VAL
json_val token "$config"
secret=$JSON_VAL
json_val name "$config"
name=$JSON_VAL
if [ -z "$url" ] || [ -z "$secret" ]; then
    log "runner config lacks url or token"
    exit 1
fi
url=${url%/}
auth="Authorization: RunnerToken $secret"

terminating=0
child=""
job_id=""
# shellcheck disable=SC2317  # invoked by the trap
on_term() {
    terminating=1
    [ -n "$child" ] && kill "$child" 2>/dev/null
}
trap on_term TERM INT

pause() {
    sleep "$1" &
    child=$!
    wait "$child"
    child=""
}

log "runner $name listening for jobs at $url (ephemeral=$ephemeral)"
jobs=0
while [ "$terminating" = 0 ]; do
    http POST "$url/_runner/acquire" "{}" "$auth"
    case $HTTP_STATUS in
        200)
            json_val job_id "$HTTP_BODY"
            job_id=$JSON_VAL
            json_val duration "$HTTP_BODY"
            duration=$JSON_VAL
            log "job $job_id acquired, running for ${duration:-0}s"
            pause "${duration:-0}"
            if [ "$terminating" = 1 ]; then
                http POST "$url/_runner/jobs/$job_id/complete" '{"conclusion": "cancelled"}' "$auth"
                log "job $job_id cancelled by SIGTERM (status $HTTP_STATUS)"
                break
            fi
            http POST "$url/_runner/jobs/$job_id/complete" '{"conclusion": "success"}' "$auth"
            log "job $job_id completed (status $HTTP_STATUS)"
            jobs=$((jobs + 1))
            if [ "$ephemeral" = 1 ]; then
                log "ephemeral runner done after one job"
                exit 0
            fi
            continue
            ;;
        401|403|404)
            log "runner credentials refused (status $HTTP_STATUS)"
            exit 1
            ;;
    esac
    pause 0.5
done
http POST "$url/_runner/offline" "{}" "$auth"
log "SIGTERM: offline (status $HTTP_STATUS) after $jobs job(s)"
exit 0
