#!/bin/sh
# Build runner-orchestrator/test-runner:latest with no registry: a busybox-static rootfs
# plus the runner shims in scripts/test-image/, imported with `docker import`.
#
# The shims speak the same command lines as the production images (docs/runner-contract.md)
# against the forge simulator, so the daemon can be tested end to end on a machine that
# cannot pull gitlab-runner or actions-runner. Takes a few seconds.
#
# Env: IMAGE (tag, default runner-orchestrator/test-runner:latest), BUSYBOX (path of a
# static busybox, default /bin/busybox; installed with apt-get when missing),
# PLATFORM (e.g. linux/arm64 to label the image for another arch, for platform tests only).
set -eu

IMAGE=${IMAGE:-runner-orchestrator/test-runner:latest}
BUSYBOX=${BUSYBOX:-/bin/busybox}
PLATFORM=${PLATFORM:-}
here=$(cd "$(dirname "$0")" && pwd)
shims=$here/test-image
entrypoint=$here/../runner-image/entrypoint.sh

is_static() {
    [ -x "$1" ] || return 1
    # a static binary has no program interpreter; `file` may be absent, so ask ldd or readelf
    if command -v ldd >/dev/null 2>&1; then
        if ldd "$1" >/dev/null 2>&1; then return 1; fi
    elif grep -q 'ld-linux' "$1"; then
        return 1
    fi
    return 0
}

if ! is_static "$BUSYBOX"; then
    if [ "$BUSYBOX" = /bin/busybox ] && command -v apt-get >/dev/null 2>&1; then
        echo "build-test-image: installing busybox-static" >&2
        apt-get install -y busybox-static >/dev/null
    fi
    is_static "$BUSYBOX" || { echo "build-test-image: $BUSYBOX is not a static busybox" >&2; exit 1; }
fi

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT INT TERM
mkdir -p "$rootfs/bin" "$rootfs/sbin" "$rootfs/usr/bin" "$rootfs/usr/sbin" \
    "$rootfs/usr/local/bin" "$rootfs/usr/local/lib/runner-orchestrator" \
    "$rootfs/etc" "$rootfs/root" "$rootfs/run" "$rootfs/tmp" "$rootfs/home/runner"
cp "$BUSYBOX" "$rootfs/bin/busybox"
chmod 0755 "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list-full); do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$rootfs/$(dirname "$applet")"
    ln -sf /bin/busybox "$rootfs/$applet"
done
chmod 1777 "$rootfs/tmp"
printf 'root:x:0:0:root:/root:/bin/sh\nrunner:x:1001:1001:runner:/home/runner:/bin/sh\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nrunner:x:1001:\n' >"$rootfs/etc/group"
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"

install -m 0755 "$entrypoint" "$rootfs/usr/local/bin/ro-entrypoint"
install -m 0755 "$shims/gitlab-runner" "$rootfs/usr/local/bin/gitlab-runner"
install -m 0644 "$shims/http.sh" "$rootfs/usr/local/lib/runner-orchestrator/http.sh"
install -m 0755 "$shims/run.sh" "$rootfs/home/runner/run.sh"
install -m 0755 "$shims/config.sh" "$rootfs/home/runner/config.sh"

# A digest of everything baked in, so tests can tell a stale image from a current one.
sources=$(LC_ALL=C; cat "$here/build-test-image.sh" "$entrypoint" "$shims"/* | sha256sum | cut -d ' ' -f 1)

set -- --change 'ENTRYPOINT ["/usr/local/bin/ro-entrypoint"]' \
    --change 'CMD ["/home/runner/run.sh"]' \
    --change 'WORKDIR /home/runner' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'LABEL io.runner-orchestrator.test-image=true' \
    --change "LABEL io.runner-orchestrator.test-image.sources=$sources"
if [ -n "$PLATFORM" ]; then
    set -- "$@" --platform "$PLATFORM"
fi
tar -C "$rootfs" --numeric-owner --owner=0 --group=0 -c . | docker import "$@" - "$IMAGE" >/dev/null
echo "built $IMAGE"
