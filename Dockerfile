# meshsim in a container, built from this source checkout: one image for the node containers and the compose
# controller. (Outside a checkout, `meshsim compose` uses meshsim/docker/Dockerfile, which installs meshsim's
# wheel from a wheelhouse or the package index.)
#   docker build -t meshsim:local .                                   (official base image, PyPI)
#   scripts/wheelhouse.sh && docker build --network none \
#       --build-arg BASE_IMAGE=meshsim-base:local -t meshsim:local .  (offline: local base, ./wheelhouse)
# With wheels in ./wheelhouse (scripts/wheelhouse.sh fills it) pip installs from there only
# (--no-index), so the build needs no network at all; without them it installs from PyPI.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# iproute2 (`ip`, for --dataplane kernel) and ping: installed only if the base image lacks them
RUN set -eu; need=""; \
    command -v ip >/dev/null 2>&1 || need="$need iproute2"; \
    command -v ping >/dev/null 2>&1 || need="$need iputils-ping"; \
    if [ -n "$need" ]; then \
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need \
      && rm -rf /var/lib/apt/lists/*; \
    fi

# dependencies first (a cached layer while pyproject.toml and the wheelhouse do not change);
# `wheelhous[e]` matches nothing when there is no wheelhouse, and pyproject.toml is always there
COPY pyproject.toml wheelhous[e] /wheelhouse/
ARG EXTRAS=""
RUN set -eu; \
    if ls /wheelhouse/*.whl >/dev/null 2>&1; then from="--no-index --find-links /wheelhouse"; else from=""; fi; \
    deps=$(python -c 'import tomllib, sys; p = tomllib.load(open("/wheelhouse/pyproject.toml", "rb"))["project"]; \
      extras = [e for e in sys.argv[1].split(",") if e]; \
      print(" ".join(repr(d) for d in p["dependencies"] + [d for e in extras for d in p["optional-dependencies"][e]]))' "$EXTRAS"); \
    eval "pip install --no-cache-dir --disable-pip-version-check $from $deps"

COPY README.md pyproject.toml /src/
COPY meshsim /src/meshsim
RUN set -eu; \
    if ls /wheelhouse/*.whl >/dev/null 2>&1; then from="--no-index --find-links /wheelhouse"; else from=""; fi; \
    pip install --no-cache-dir --disable-pip-version-check --no-deps $from /src \
    && rm -rf /src /wheelhouse && meshsim --version

RUN meshsim examples --copy /meshsim/scenarios >/dev/null
WORKDIR /meshsim
ENV PYTHONUNBUFFERED=1
EXPOSE 179 9179
ENTRYPOINT ["meshsim"]
CMD ["--help"]
