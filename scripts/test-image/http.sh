# shellcheck shell=sh
# Tiny HTTP/1.0 client and flat-JSON reader for the test image's runner shims.
#
# busybox wget can neither PUT nor report status codes, so requests are written by hand
# and sent with `nc`. HTTP/1.0 makes the server close the connection after answering,
# which is what ends `nc`. Plain http only: the shims talk to the forge simulator on
# loopback, never to a real forge.

# http METHOD URL [BODY] [EXTRA_HEADER]
# Sets HTTP_STATUS (e.g. 201, or 000 when nothing answered) and HTTP_BODY.
#
# `nc -e` runs a tiny writer with the socket as its stdin/stdout: it sends the request,
# then copies the answer to stderr, which we capture. Piping the request into nc instead
# does not work against aiohttp: busybox nc half-closes the socket at the end of its
# stdin, and aiohttp drops a half-closed connection before answering.
http() {
    _method=$1
    _url=$2
    _body=${3:-}
    _extra=${4:-}
    _rest=${_url#http://}
    case $_rest in
        */*) _hostport=${_rest%%/*}; _path=/${_rest#*/} ;;
        *) _hostport=$_rest; _path=/ ;;
    esac
    _host=${_hostport%:*}
    _port=${_hostport##*:}
    [ "$_port" = "$_hostport" ] && _port=80
    _len=$(printf '%s' "$_body" | wc -c | tr -d ' ')
    _RO_HEAD=$(
        printf '%s %s HTTP/1.0\r\nHost: %s\r\nContent-Type: application/json\r\n' \
            "$_method" "$_path" "$_hostport"
        printf 'Content-Length: %s' "$_len"
        [ -n "$_extra" ] && printf '\r\n%s' "$_extra"
    )
    _RO_BODY=$_body
    export _RO_HEAD _RO_BODY
    # shellcheck disable=SC2016  # expanded by the child shell, from its environment
    _resp=$(nc -w 5 "$_host" "$_port" -e /bin/sh -c \
        'printf "%s\r\n\r\n%s" "$_RO_HEAD" "$_RO_BODY"; cat >&2' 2>&1)
    unset _RO_HEAD _RO_BODY
    HTTP_STATUS=$(printf '%s\n' "$_resp" | head -n 1 | cut -d ' ' -f 2)
    case $HTTP_STATUS in
        [0-9][0-9][0-9]) ;;
        *) HTTP_STATUS=000 ;;
    esac
    # the body is everything after the first empty (CR-only) line
    # shellcheck disable=SC2034  # read by the scripts that source this file
    HTTP_BODY=$(printf '%s\n' "$_resp" | tr -d '\r' | sed '1,/^$/d')
}

# json_get KEY: the first value of "KEY" in the flat JSON on stdin (string or number).
json_get() {
    tr -d '\n' | grep -o "\"$1\"[[:space:]]*:[[:space:]]*\(\"[^\"]*\"\|[-0-9.][0-9.eE+-]*\|true\|false\|null\)" \
        | head -n 1 | sed 's/^"[^"]*"[[:space:]]*:[[:space:]]*//; s/^"//; s/"$//'
}

# json_top: the JSON object on stdin with its nested objects cut out, so json_get finds a
# top-level key even when a nested object has one of the same name (a job's "id" and
# "token" versus job_info's).
json_top() {
    tr -d '\n' | sed -e ':a' -e 's/\(.\){[^{}]*}/\1/' -e 'ta'
}

# json_objects: the JSON on stdin with one nested object per line (to find the one
# holding a given key, e.g. a job variable).
json_objects() {
    sed 's/[{}]/\n/g'
}

# json_str VALUE: VALUE as a JSON string literal (escapes backslash and double quote).
json_str() {
    printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"
}

# root_url URL: scheme://host[:port] of URL (config.sh registers there).
root_url() {
    printf '%s\n' "$1" | sed 's#^\([a-z]*://[^/]*\).*#\1#'
}

# now: seconds since the epoch.
now() {
    date +%s
}

log() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
}
