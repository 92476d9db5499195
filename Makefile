# Two commands for a newcomer: `make run` and `make test`. Both create or reuse .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ENGINES_STAMP := $(VENV)/.engines
# llama-cpp-python ships only an sdist; its wheel is compiled once per machine (-march=native, so never copy
# it to another CPU) and kept here, so later installs take seconds.
WHEELS ?= $(HOME)/.cache/aima/wheels/no-amx
LLAMA_CPP_VERSION := 0.3.36
# Without AMX on x86: some VMs advertise AMX (cpuinfo, and the kernel grants it) yet fault at its first
# instruction (ldtilecfg: general protection fault), so llama.cpp died on its first token. Other compilers
# do not know these flags.
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CPP_CMAKE := -DLLAVA_BUILD=OFF$(if $(filter x86_64,$(shell uname -m)), -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)')

.PHONY: install engines run test lint bench manifest clean down docker

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[dev,ray,plot]'
	@touch $(STAMP)

install: $(STAMP)

# The embedded engines (llama.cpp, faster-whisper, piper) and the bert-to-gguf converter: the `engines` extra.
$(ENGINES_STAMP): $(STAMP) pyproject.toml
	@if ! ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1; then \
	  mkdir -p $(WHEELS); \
	  echo "aima: building llama-cpp-python $(LLAMA_CPP_VERSION) once — about 4 min on 2 cores — cached in $(WHEELS)"; \
	  start=$$(date +%s); \
	  ( n=0; while sleep 5; do n=$$((n + 1)); test $$((n % 6)) -ne 0 || \
	    echo "aima:   still compiling llama-cpp-python ($$(( $$(date +%s) - start ))s)"; done ) & hb=$$!; \
	  CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="$(LLAMA_CPP_CMAKE)" \
	    $(BIN)/python -m pip wheel --no-deps --progress-bar off -w $(WHEELS) llama-cpp-python==$(LLAMA_CPP_VERSION); \
	  rc=$$?; kill $$hb 2>/dev/null; \
	  test $$rc -eq 0 || { echo "aima: llama-cpp-python build failed (exit $$rc); needs gcc, cmake (apt-get install build-essential cmake)"; exit $$rc; }; \
	  echo "aima: built llama-cpp-python in $$(( $$(date +%s) - start ))s"; \
	fi
	@echo "aima: installing engines (llama-cpp-python from $(WHEELS), faster-whisper, piper-tts)"
	@$(BIN)/python -m pip install -q --find-links $(WHEELS) --only-binary llama-cpp-python -e '.[dev,engines,ray,plot]'
	@touch $(ENGINES_STAMP)

engines: $(ENGINES_STAMP)

run: $(ENGINES_STAMP)
	$(BIN)/aima up

down: $(STAMP)
	$(BIN)/aima down

# The ray runtime's tests start their own 3-node Ray cluster on 127.0.0.2-4 (the `ray` extra, installed above)
# and stop it at the end.
# The docker runtime's tests need a Docker daemon: `make test` starts an installed dockerd when none runs;
# `make docker` also installs Debian's docker.io (as root). Without a daemon those tests skip, saying why
# (with AIMA_TEST_STRICT=1, as in CI, they fail instead). Likewise the podman tests, with an installed
# Podman (scripts/podman-up.sh installs it and starts its Docker-compatible API).
test: $(ENGINES_STAMP)
	$(BIN)/ruff check src tests bench
	@bash scripts/dockerd-up.sh --no-install || echo "aima: no Docker daemon (make docker installs and starts one); docker tests will skip"
	@bash scripts/podman-up.sh --no-install >/dev/null || echo "aima: no Podman API (scripts/podman-up.sh installs and starts one); podman tests will skip"
	@command -v chromium >/dev/null || echo "aima: no chromium (bash scripts/chromium.sh installs Debian's); the web page's tests will skip"
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

docker:
	bash scripts/dockerd-up.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

# Five benchmarks that print figures beside same-run baselines (bench/README.md). gateway.py needs `wrk`
# (apt-get install -y wrk) and puts LiteLLM in its own venv, bench/.venv-litellm, on first use.
bench: $(ENGINES_STAMP)
	$(BIN)/python bench/control_plane.py
	$(BIN)/python bench/stack.py
	$(BIN)/python bench/gateway.py
	@bash scripts/dockerd-up.sh
	$(BIN)/python bench/docker_runtime.py
	$(BIN)/python bench/ray_runtime.py
	@bash scripts/chromium.sh
	$(BIN)/python bench/ui.py

manifest: $(STAMP)
	$(BIN)/python -m aima.surfaces.cli.manifest --write

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
