#!/usr/bin/env bash
# Fill ./wheelhouse (or $WHEELHOUSE) with the wheels the Docker image installs: meshsim's own wheel (built from
# this checkout), its dependencies' and the build backend's, for the base image's Python on this machine's
# architecture, so `docker build --network none` works:
#   scripts/wheelhouse.sh && BASE_IMAGE=meshsim-base:local docker-compose up --build --exit-code-from controller
#   meshsim compose S -o FILE --wheelhouse wheelhouse   (an image from meshsim's wheel, no checkout needed)
# The Python version is the base image's: $PYVER if set, else asked from $BASE_IMAGE (default
# python:3.11-slim) when Docker has that image, else read from its tag (python:3.12-slim -> 3.12), else 3.11.
# Uses this host's pip (it reaches the package index); idempotent; EXTRAS=plots adds matplotlib's wheels
# (then build with --build-arg EXTRAS=plots). Env: PYTHON (default: .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
OUT=${WHEELHOUSE:-wheelhouse}
arch=$(uname -m)
if [ -z "${PYVER:-}" ] && command -v docker >/dev/null 2>&1 && docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  PYVER=$(docker run --rm --network none --entrypoint python3 "$BASE_IMAGE" \
    -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
fi
if [ -z "${PYVER:-}" ]; then
  PYVER=$(sed -nE 's/^([^:]*\/)?python:([0-9]+\.[0-9]+).*/\2/p' <<<"$BASE_IMAGE")
fi
PYVER=${PYVER:-3.11}
abi="cp${PYVER/./}"
deps=$("$PYTHON" - "${EXTRAS:-}" <<'PY'
import sys, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))
extras = [e for e in sys.argv[1].split(",") if e]
build = p.get("build-system", {}).get("requires", ["setuptools>=64"])
print("\n".join(p["project"]["dependencies"] + [d for e in extras for d in p["project"]["optional-dependencies"][e]] + build + ["wheel"]))
PY
)
mapfile -t reqs <<<"$deps"
mkdir -p "$OUT"
"$PYTHON" -m pip download --disable-pip-version-check -q -d "$OUT" --only-binary=:all: \
  --python-version "$PYVER" --implementation cp --abi "$abi" --abi abi3 --abi none \
  --platform "manylinux2014_$arch" --platform "manylinux_2_28_$arch" --platform "manylinux_2_17_$arch" \
  --platform any "${reqs[@]}"
rm -f "$OUT"/meshsim-*.whl
"$PYTHON" -m pip wheel --disable-pip-version-check -q --no-deps --no-index --find-links "$OUT" -w "$OUT" . >/dev/null
echo "wheelhouse: $(ls "$OUT"/*.whl | wc -l) wheels for CPython $PYVER ($BASE_IMAGE) in $(cd "$OUT" && pwd)" >&2
