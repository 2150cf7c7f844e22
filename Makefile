# Two commands set everything up: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt
STAMP := $(VENV)/.installed
# CPU-only machines build sam2 without its CUDA extension.
SAM2_BUILD_CUDA ?= $(shell command -v nvcc >/dev/null 2>&1 && echo 1 || echo 0)

.PHONY: env demo test bench clean browser postgresql

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch + torchvision first: sam2 builds against them (no build isolation, or pip
	# fetches a second torch just to build it).
	$(PIP) torch==2.14.1 torchvision==0.29.1
	$(PIP) "setuptools>=61" wheel
	SAM2_BUILD_CUDA=$(SAM2_BUILD_CUDA) $(PIP) --no-build-isolation "sam2>=1.1"
	# opencv-contrib (xphoto inpainting) replaces opencv-python-headless: both are the cv2 module, never keep both.
	if $(PY) -m pip show -q opencv-python-headless >/dev/null 2>&1; then \
		$(PY) -m pip uninstall -y -q opencv-python-headless opencv-contrib-python-headless; fi
	$(PIP) -e ".[dev]"
	# An ffmpeg binary for deliverable transcodes and the benches: the static one imageio-ffmpeg ships.
	ln -sf "$$($(PY) -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())')" $(VENV)/bin/ffmpeg
	$(VENV)/bin/ffmpeg -hide_banner -version | head -1
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/voidbatch demo --out demo_out

test: $(STAMP) browser postgresql
	$(VENV)/bin/python -m pytest -q

# Debian's Chromium, for the review page's browser tests (they skip where it cannot be installed).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1 && \
		echo "installed chromium for the browser tests"; } || echo "chromium not installed: browser tests will skip"

# Debian's PostgreSQL, for the production topology test (a Prefect server on PostgreSQL; it skips without).
# Only the programs: no default cluster is created or started; the test starts one of its own and removes it.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		mkdir -p /etc/postgresql-common && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf && \
		apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			-o Dpkg::Options::=--force-confold postgresql >/dev/null 2>&1 && \
		echo "installed postgresql for the farm topology test"; } || echo "postgresql not installed: the farm topology test will skip"

bench: $(STAMP)
	$(PY) bench/decode.py

clean:
	rm -rf $(VENV) demo_out .voidbatch .pytest_cache
