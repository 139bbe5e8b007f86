#!/bin/sh
# Test-image stand-in for actions-runner's config.sh: registers with the simulator.
#
#   config.sh --unattended --disableupdate --url URL --name N --labels L
#             [--token T | env ACTIONS_RUNNER_INPUT_TOKEN] [--work W] [--ephemeral ...]
#
# POSTs /_runner/register at scheme://host:port of URL and writes .runner (flat JSON
# {url, runner_id, name, token}) for run.sh. Exit 1 when the forge says no.
# shellcheck source-path=SCRIPTDIR source=http.sh
. "${RO_LIB:-/usr/local/lib/runner-orchestrator}/http.sh"

home=${RUNNER_HOME:-/home/runner}
url=""
this_host
name=$THIS_HOST
labels=""
token=${ACTIONS_RUNNER_INPUT_TOKEN:-}
work=_work
while [ $# -gt 0 ]; do
    case $1 in
        --url) url=$2; shift 2 ;;
        --name) name=$2; shift 2 ;;
        --labels) labels=$2; shift 2 ;;
        --token) token=$2; shift 2 ;;
        --work) work=$2; shift 2 ;;
        *) shift ;;
    esac
done
[ -n "$url" ] || { log "--url is required"; exit 2; }
[ -n "$token" ] || { log "no registration token (--token or ACTIONS_RUNNER_INPUT_TOKEN)"; exit 2; }
root_url "$url"
root=$ROOT_URL

json_quote "$token"
body="{\"token\": $JSON_STR"
json_quote "$name"
name_json=$JSON_STR
json_quote "$labels"
body="$body, \"name\": $name_json, \"labels\": $JSON_STR"
json_quote "$url"
http POST "$root/_runner/register" "$body, \"url\": $JSON_STR}"
if [ "$HTTP_STATUS" != 201 ]; then
    log "registration failed: status $HTTP_STATUS $HTTP_BODY"
    exit 1
fi
json_val runner_id "$HTTP_BODY"
runner_id=$JSON_VAL
json_val token "$HTTP_BODY"
json_quote "$JSON_VAL"
secret_json=$JSON_STR
json_quote "$root"
mkdir -p "$home/$work"
umask 077
printf '{"url": %s, "runner_id": %s, "name": %s, "token": %s}\n' \
    "$JSON_STR" "$runner_id" "$name_json" "$secret_json" >"$home/.runner"
log "runner $name registered as $runner_id at $root"
