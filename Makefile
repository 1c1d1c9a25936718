# The two commands a newcomer needs (see README.md):
#   make run    set up .venv and run the default scenario on this machine (no Docker)
#   make test   set up .venv (and the system tools the tests use) and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
SCENARIO ?= scenarios/three-node-ipip.yaml
OUT    ?= out/$(basename $(notdir $(SCENARIO)))

.PHONY: setup run test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
	$(VENV)/bin/pip install -q -e '.[test,plots]'
	touch $@

setup: $(VENV)/.installed

run: setup
	$(VENV)/bin/meshsim run $(SCENARIO) --out $(OUT)

test: setup
	@./scripts/system-deps.sh
	$(VENV)/bin/python -m pytest -q -ra

clean:
	rm -rf $(VENV) out .pytest_cache

# Docker compose (README "Docker compose"): wheels for offline image builds, the top-level compose file and
# its token file docker-compose.env (a fresh MESHSIM_TOKEN, mode 0600, git-ignored: run this once before
# `docker compose up`), and the compose end-to-end tests alone (they write docker-compose.env if it is missing)
.PHONY: wheelhouse compose-file e2e
wheelhouse: setup
	./scripts/wheelhouse.sh

compose-file: setup
	$(VENV)/bin/meshsim compose scenarios/compose-mesh.yaml -o docker-compose.yml

e2e: setup
	$(VENV)/bin/python -m pytest -q -ra -m e2e tests/e2e
