# Two commands on a fresh machine (Python >= 3.11, gcc, make):
#   make report   set up .venv if missing, run the main job on embedded defaults
#   make test     set up .venv if missing (with the mpi, test and peers extras: torch 2.13 CPU),
#                 run the whole suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: report test clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[mpi,test,peers]'
	touch $(STAMP)

report: $(STAMP)
	$(VENV)/bin/perfmodel report

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info .asv

# Model vs harness on this machine (about 4 minutes): node profiles per threads-per-rank, the
# ping-pong, timed harness runs (ranks x threads <= cores) and functional ones, in three rounds
# spread over time (a shared machine drifts: each figure is the median of its rounds), then
# the errors. ROUNDS=1 for a quick look.
VAL    ?= results/validation
ROUNDS ?= 3
PM     := $(VENV)/bin/perfmodel
.PHONY: validate
validate: $(STAMP)
	rm -rf $(VAL) && mkdir -p $(VAL)
	for r in $$(seq $(ROUNDS)); do \
	  $(PM) node --net hep --image-size 32 --filters 16 --threads 1 --sweep 1,2,4,8,16 --repeats 10 -o $(VAL)/node-f16-t1-$$r.csv --no-progress > /dev/null && \
	  $(PM) node --net hep --image-size 32 --filters 16 --threads 1 --busy-ranks 2 --sweep 8 --repeats 10 -o $(VAL)/node-f16-t1-b2-$$r.csv --no-progress > /dev/null && \
	  $(PM) node --net hep --image-size 32 --filters 16 --threads 2 --sweep 1,2,4,8,16 --repeats 10 -o $(VAL)/node-f16-t2-$$r.csv --no-progress > /dev/null && \
	  $(PM) node --net hep --image-size 16 --threads 1 --batch 2 --sweep 1,2,4 --repeats 10 -o $(VAL)/node-h16-t1-$$r.csv --no-progress > /dev/null && \
	  $(PM) node --net hep --image-size 16 --threads 2 --batch 2 --sweep 1,2,4 --repeats 10 -o $(VAL)/node-h16-t2-$$r.csv --no-progress > /dev/null && \
	  $(PM) scale --micro --strategies sync,async --workers 1,2 --filters 16 --image-size 32 --batch 8 --steps 40 -o $(VAL)/scale.csv --no-progress && \
	  $(PM) scale --strategies sync,async,hybrid --workers 1,2 --groups 1,2 --filters 16 --image-size 32 --batch 8 --steps 40 --straggler exponential:0.02 -o $(VAL)/scale.csv --no-progress && \
	  $(PM) scale --strategies sync,async --workers 1,2 --filters 128 --image-size 16 --batch 2 --steps 40 -o $(VAL)/scale.csv --no-progress || exit 1; \
	done
	$(PM) validate --node $(VAL)/node-*.csv --scale $(VAL)/scale.csv -o $(VAL)/errors.csv

# The measurements behind the `localhost` preset (perfmodel predict localhost), ~40 s.
.PHONY: localhost
localhost: $(STAMP)
	mkdir -p results/localhost
	$(PM) node --net hep --image-size 32 --filters 16 --threads 1 --sweep 1,2,4,8,16 --repeats 10 -o results/localhost/node.csv --no-progress > /dev/null
	$(PM) node --net hep --image-size 32 --filters 16 --threads 1 --busy-ranks 2 --sweep 8 --repeats 10 --append -o results/localhost/node.csv --no-progress > /dev/null
	rm -f results/localhost/micro.csv
	$(VENV)/bin/mpiexec -n 2 $(PY) -m mpi4py -m perfmodel.harness.micro --output results/localhost/micro.csv
	$(PM) predict localhost

# Time to a target loss, measured and predicted (~10 min here): calibration runs fit the
# convergence model, held-out timed runs test it (perfmodel/harness/convergence_runs.py, perfmodel/judge/converge.py).
CONV ?= results/convergence
.PHONY: convergence
convergence: $(STAMP)
	$(PM) converge --out $(CONV)

# Continuous benchmarking, offline. `make asv`: every suite for HEAD in this environment, then
# the dashboard in .asv/html, made to work with no network (suites/offline_html.py); open it
# with `.venv/bin/asv preview` (http://127.0.0.1:8080). ASV_BENCH=REGEX for a subset.
# `make asv-regressions BASE=origin/main HEAD=HEAD`: both commits benchmarked from worktrees,
# exit 1 when one got worse by more than FACTOR (suites/regressions.py): the CI recipe.
ASV        := $(VENV)/bin/asv
ASV_MACHINE ?= dev-2core
ASV_BENCH  ?=
BASE       ?= HEAD~1
HEAD       ?= HEAD
FACTOR     ?= 1.1
.PHONY: asv asv-regressions
asv: $(STAMP)
	$(ASV) machine --yes --machine $(ASV_MACHINE) > /dev/null
	$(ASV) run --python=same --machine $(ASV_MACHINE) --set-commit-hash $$(git rev-parse HEAD) $(if $(ASV_BENCH),--bench '$(ASV_BENCH)')
	$(ASV) publish
	$(PY) suites/offline_html.py .asv/html

asv-regressions: $(STAMP)
	$(PY) suites/regressions.py $(BASE) $(HEAD) --factor $(FACTOR) $(if $(ASV_BENCH),--bench '$(ASV_BENCH)')
