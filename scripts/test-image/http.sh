# shellcheck shell=sh disable=SC2034  # the results are read by the scripts sourcing this file
# Tiny HTTP/1.0 client and flat-JSON reader for the test image's runner shims.
#
# busybox wget can neither PUT nor report status codes, so requests are written by hand
# and sent with `nc`. HTTP/1.0 makes the server close the connection after answering,
# which is what ends `nc`. Plain http only: the shims talk to the forge simulator on
# loopback, never to a real forge.
#
# Few processes on purpose: the benchmark starts 50 of these runners at once on two
# cores, next to the engine starting their containers (docs/benchmarks.md). Everything
# but the connection itself (and a rare fallback) is shell built-ins and parameter
# expansion; results come back in variables (HTTP_STATUS, HTTP_BODY, JSON_VAL, JSON_STR),
# not through `$(...)`, which would fork a subshell per call.

_RO_CR=$(printf '\r')
_RO_LF='
'
_RO_CRLF=$_RO_CR$_RO_LF

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
    case $_body in
        # ${#} counts characters; Content-Length counts bytes (same for printable ASCII)
        *[!\ -~]*) _len=$(printf '%s' "$_body" | wc -c | tr -d ' ') ;;
        *) _len=${#_body} ;;
    esac
    _RO_HEAD="$_method $_path HTTP/1.0${_RO_CRLF}Host: $_hostport${_RO_CRLF}Content-Type: application/json${_RO_CRLF}Content-Length: $_len"
    [ -n "$_extra" ] && _RO_HEAD="$_RO_HEAD$_RO_CRLF$_extra"
    _RO_BODY=$_body
    export _RO_HEAD _RO_BODY
    # shellcheck disable=SC2016  # expanded by the child shell, from its environment
    _resp=$(nc -w 5 "$_host" "$_port" -e /bin/sh -c \
        'printf "%s\r\n\r\n%s" "$_RO_HEAD" "$_RO_BODY"; exec cat >&2' 2>&1)
    unset _RO_HEAD _RO_BODY
    # status: the second field of the first line
    _line=${_resp%%"$_RO_LF"*}
    _line=${_line%"$_RO_CR"}
    HTTP_STATUS=${_line#* }
    HTTP_STATUS=${HTTP_STATUS%% *}
    case $HTTP_STATUS in
        [0-9][0-9][0-9]) ;;
        *) HTTP_STATUS=000 ;;
    esac
    # body: everything after the first empty line (command substitution already dropped
    # the trailing newlines); carriage returns removed, as a line-based reader would
    case $_resp in
        *"$_RO_CRLF$_RO_CRLF"*) HTTP_BODY=${_resp#*"$_RO_CRLF$_RO_CRLF"} ;;
        *"$_RO_LF$_RO_LF"*) HTTP_BODY=${_resp#*"$_RO_LF$_RO_LF"} ;;
        *) HTTP_BODY= ;;
    esac
    case $HTTP_BODY in
        *"$_RO_CR"*) HTTP_BODY=$(printf '%s' "$HTTP_BODY" | tr -d '\r') ;;
    esac
}

# json_val KEY JSON: set JSON_VAL to the first value of "KEY" in JSON that is a string,
# a number, true, false or null (an occurrence followed by an object or array, or that is
# not followed by a colon, e.g. a string value equal to KEY, is skipped). Returns 1 and
# leaves JSON_VAL empty when there is none. Strings are returned as they are written:
# escapes are not decoded, and a value ends at the next double quote.
json_val() {
    _key="\"$1\""
    _json=$2
    JSON_VAL=
    while :; do
        case $_json in
            *"$_key"*) _json=${_json#*"$_key"} ;;
            *) return 1 ;;
        esac
        _json=${_json#"${_json%%[![:space:]]*}"}
        case $_json in
            :*) _json=${_json#:} ;;
            *) continue ;;
        esac
        _json=${_json#"${_json%%[![:space:]]*}"}
        case $_json in
            \"*\"*)
                _json=${_json#\"}
                JSON_VAL=${_json%%\"*}
                return 0
                ;;
            [-0-9.]*)
                JSON_VAL=${_json%%[!-0-9.eE+]*}
                return 0
                ;;
            true*) JSON_VAL=true; return 0 ;;
            false*) JSON_VAL=false; return 0 ;;
            null*) JSON_VAL=null; return 0 ;;
        esac
    done
}

# json_object_with TEXT JSON: set JSON_OBJ to the innermost {...} of JSON around the
# first occurrence of TEXT (to read the object holding a given key, e.g. a job variable
# whose "key" is SIM_JOB_DURATION, its "value" before or after it). Returns 1 when JSON
# does not contain TEXT.
json_object_with() {
    case $2 in
        *"$1"*) ;;
        *) JSON_OBJ=; return 1 ;;
    esac
    _before=${2%%"$1"*}
    _after=${2#*"$1"}
    JSON_OBJ="{${_before##*\{}$1${_after%%\}*}}"
}

# json_top: the JSON object on stdin with its nested objects cut out, so json_val finds a
# top-level key even when a nested object has one of the same name (a job's "id" and
# "token" versus job_info's).
json_top() {
    tr -d '\n' | sed -e ':a' -e 's/\(.\){[^{}]*}/\1/' -e 'ta'
}

# json_quote VALUE: set JSON_STR to VALUE as a JSON string literal (backslash and double
# quote escaped; a value with neither, the usual case, needs no process).
json_quote() {
    case $1 in
        *[\\\"]*) JSON_STR="\"$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')\"" ;;
        *) JSON_STR="\"$1\"" ;;
    esac
}

# root_url URL: set ROOT_URL to scheme://host[:port] of URL (config.sh registers there).
root_url() {
    case $1 in
        *://*) _tail=${1#*://}; ROOT_URL=${1%%://*}://${_tail%%/*} ;;
        *) ROOT_URL=$1 ;;
    esac
}

# this_host: set THIS_HOST to the container's hostname (read, not a `hostname` process).
this_host() {
    if [ -r /proc/sys/kernel/hostname ]; then
        read -r THIS_HOST </proc/sys/kernel/hostname
    else
        THIS_HOST=$(hostname)
    fi
}

# now: seconds since the epoch.
now() {
    date +%s
}

log() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
}
