#!/usr/bin/env bash
# Fill ./wheelhouse/ with wheels of every runtime dependency in pyproject.toml (plus the
# build backend), so `docker build --build-arg PIP_NO_INDEX=1 ...` needs no network.
#
# Why: on machines where the build containers cannot use PyPI (no route, or a TLS proxy
# whose CA only the host trusts) pip inside `docker build` fails; pip on the host works.
# The wheels must suit the image's Python: the host's python3 must have the same
# major.minor as the image (3.11 for python:3.11-slim and Debian bookworm) and a glibc
# no newer than the image's. The script checks the version (TARGET_PYTHON, default 3.11).
#
# Cached: pip reuses wheels already in the directory. Usage: scripts/build-wheelhouse.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${WHEELHOUSE:-$ROOT/wheelhouse}"
PY="${PYTHON:-python3}"
TARGET="${TARGET_PYTHON:-3.11}"

have="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [ "$have" != "$TARGET" ]; then
    echo "build-wheelhouse: $PY is $have but the image runs $TARGET; set PYTHON=python$TARGET" >&2
    exit 1
fi

mkdir -p "$OUT"
req="$(mktemp)"
trap 'rm -f "$req"' EXIT
"$PY" - "$ROOT/pyproject.toml" > "$req" <<'PYEOF'
import sys
import tomllib

with open(sys.argv[1], "rb") as fh:
    data = tomllib.load(fh)
for line in data["project"]["dependencies"] + data["build-system"]["requires"]:
    print(line)
PYEOF
echo "build-wheelhouse: $(wc -l < "$req") requirements -> $OUT"
"$PY" -m pip wheel --quiet --wheel-dir "$OUT" -r "$req"
echo "build-wheelhouse: $(find "$OUT" -name '*.whl' | wc -l) wheels in $OUT"
