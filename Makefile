# The two commands a newcomer runs: `make demo` and `make test`. Each creates .venv/ if missing.
PYTHON ?= python3
VENV := .venv
# CPU build of torch from local disk on these machines; GPU users override, e.g. TORCH_SPEC="torch".
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	# torch first: otherwise pip resolves a multi-GB CUDA build for the dependencies.
	$(VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(VENV)/bin/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/frugalmerge demo --out demo_out

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

clean:
	rm -rf $(VENV) demo_out
