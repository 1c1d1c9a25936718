#!/usr/bin/env bash
# Fill ./wheelhouse with the wheels the Docker image installs (meshsim's dependencies and the build
# backend), for CPython 3.11 on this machine's architecture, so `docker build --network none` works:
#   scripts/wheelhouse.sh && BASE_IMAGE=meshsim-base:local docker-compose up --build --exit-code-from controller
# Uses this host's pip (it reaches the package index); idempotent; EXTRAS=plots adds matplotlib's wheels
# (then build with --build-arg EXTRAS=plots). Env: PYTHON (default: .venv/bin/python, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
arch=$(uname -m)
deps=$("$PYTHON" - "${EXTRAS:-}" <<'PY'
import sys, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))
extras = [e for e in sys.argv[1].split(",") if e]
build = p.get("build-system", {}).get("requires", ["setuptools>=64"])
print("\n".join(p["project"]["dependencies"] + [d for e in extras for d in p["project"]["optional-dependencies"][e]] + build + ["wheel"]))
PY
)
mapfile -t reqs <<<"$deps"
mkdir -p wheelhouse
"$PYTHON" -m pip download --disable-pip-version-check -q -d wheelhouse --only-binary=:all: \
  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
  --platform "manylinux2014_$arch" --platform "manylinux_2_28_$arch" --platform "manylinux_2_17_$arch" \
  --platform any "${reqs[@]}"
echo "wheelhouse: $(ls wheelhouse/*.whl | wc -l) wheels in $(pwd)/wheelhouse" >&2
