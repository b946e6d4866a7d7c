# Two commands on a fresh machine (Python >= 3.11, gcc, make):
#   make report   set up .venv if missing, run the main job on embedded defaults
#   make test     set up .venv if missing (with the mpi and test extras), run the whole suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: report test clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[mpi,test]'
	touch $(STAMP)

report: $(STAMP)
	$(VENV)/bin/perfmodel report

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .asv
