#!/usr/bin/env bash
# Build a local Python base image without any container registry:
#   debootstrap (Debian bookworm, minbase) + python3, python3-venv, python3-pip
#   -> tar | docker import -> runner-orchestrator/base-python:bookworm
#
# The daemon's Dockerfile defaults to BASE_IMAGE=python:3.11-slim from Docker Hub. On
# machines that cannot pull (air-gapped CI, this project's test machines) build this base
# once and pass it:  docker build --build-arg BASE_IMAGE=runner-orchestrator/base-python:bookworm .
#
# Cached: does nothing when the image already exists (use --force to rebuild).
# Needs root, debootstrap (apt-get install -y debootstrap) and a reachable Debian mirror.
# The mirror is DEBIAN_MIRROR, else the one this machine's apt uses, else deb.debian.org.
set -euo pipefail

IMAGE="${BASE_IMAGE_TAG:-runner-orchestrator/base-python:bookworm}"
SUITE="${DEBIAN_SUITE:-bookworm}"
FORCE=0
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "build-base-image: unknown argument $arg" >&2; exit 2 ;;
    esac
done

if [ "$FORCE" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "build-base-image: $IMAGE exists, nothing to do (--force rebuilds)"
    exit 0
fi

command -v debootstrap >/dev/null || {
    echo "build-base-image: debootstrap missing (apt-get install -y debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "build-base-image: debootstrap needs root" >&2; exit 1; }

detect_mirror() {
    # deb822 sources (URIs: ...) first, then one-line sources (deb URL suite ...).
    local files=() uri
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] && files+=("$f")
    done
    [ "${#files[@]}" -gt 0 ] || return 1
    uri="$(grep -h -E '^(URIs:|deb )' "${files[@]}" 2>/dev/null \
        | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' \
        | awk '{print $1}' | grep -E '/debian/?$' | grep -v -- '-security' | head -n1 || true)"
    [ -n "$uri" ] && echo "${uri%/}"
}

MIRROR="${DEBIAN_MIRROR:-$(detect_mirror || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

ROOT="$(mktemp -d /tmp/ro-base-rootfs.XXXXXX)"
cleanup() { rm -rf --one-file-system "$ROOT"; }
trap cleanup EXIT

echo "build-base-image: debootstrap $SUITE from $MIRROR into $ROOT"
start=$(date +%s)
debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,ca-certificates \
    "$SUITE" "$ROOT" "$MIRROR"

# Keep the image small and reproducible-ish: no package caches, no lists.
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/log/* \
       "$ROOT"/tmp/* "$ROOT"/root/.cache
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" > "$ROOT/etc/apt/sources.list"

echo "build-base-image: importing as $IMAGE"
tar --numeric-owner -C "$ROOT" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'LABEL io.runner-orchestrator.base-image=true' \
    --change 'CMD ["python3"]' \
    - "$IMAGE" >/dev/null
echo "build-base-image: $IMAGE built in $(( $(date +%s) - start ))s"
