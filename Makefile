# The course's two commands (see README):  make course   and   make test
# Both create .venv when it is missing and install what they need (torch pins: constraints.txt).

PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PRESET  ?= quick
BUILD   ?= build
STAMP   := $(VENV)/.installed-stamp
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

# Jupyter, IPython and matplotlib keep their state inside build/, never in the user's home.
STATE := $(abspath $(BUILD))/.state
export JUPYTER_CONFIG_DIR  := $(STATE)/jupyter-config
export JUPYTER_DATA_DIR    := $(STATE)/jupyter-data
export JUPYTER_RUNTIME_DIR := $(STATE)/jupyter-runtime
export IPYTHONDIR          := $(STATE)/ipython
export MPLCONFIGDIR        := $(STATE)/matplotlib
export JUPYTER_PLATFORM_DIRS := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: help setup course site student test test-lib test-notebooks lab refresh-notebooks sync-solutions clean

help:
	@echo "make course   run every notebook (PRESET=$(PRESET)) into $(BUILD)/notebooks, and the course site of them into $(BUILD)/html"
	@echo "make site     the course site of the committed notebooks (not run) in $(BUILD)/html: open $(BUILD)/html/index.html"
	@echo "make student  the student notebooks in $(BUILD)/student: every solution a stub, no outputs"
	@echo "make test     pytest on tests/ and nbval on notebooks/ (smoke preset)"
	@echo "make lab      open JupyterLab on notebooks/"
	@echo "make refresh-notebooks   re-run the notebooks with PRESET and store their outputs in notebooks/"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

course: $(STAMP)
	@mkdir -p $(BUILD)/notebooks $(BUILD)/html $(STATE)
	@set -e; start=$$(date +%s); \
	for nb in $(NOTEBOOKS); do \
	  echo "== $$nb (preset $(PRESET))"; \
	  VAE_COURSE_PRESET=$(PRESET) $(BIN)/jupyter nbconvert --to notebook --execute \
	    --ExecutePreprocessor.timeout=-1 --output-dir $(BUILD)/notebooks "$$nb"; \
	done; \
	$(BIN)/python -m vae_lib.coursesite --out $(BUILD)/html $(addprefix $(BUILD)/notebooks/,$(notdir $(NOTEBOOKS))); \
	echo; echo "Executed notebooks: $(abspath $(BUILD))/notebooks"; \
	echo "Course site:        $(abspath $(BUILD))/html/index.html (offline: MathJax is served from the build)"; \
	echo "Wall time:          $$(( $$(date +%s) - start )) s (preset $(PRESET))"

# The course site of the committed notebooks, as they are (nothing is run): seconds.
site: $(STAMP)
	$(BIN)/python -m vae_lib.coursesite --out $(BUILD)/html $(NOTEBOOKS)

# The student's notebooks: each solution region (### BEGIN/END SOLUTION) becomes
# raise NotImplementedError("<exercise>: your code here"); outputs cleared. The notebooks/ are the teacher's.
student: $(STAMP)
	$(BIN)/python -m vae_lib.classroom student --out $(BUILD)/student $(NOTEBOOKS)

# For maintainers: the solution cells are written from the references in vae_lib/exercises (edit those).
sync-solutions: $(STAMP)
	$(BIN)/python -m vae_lib.classroom sync $(NOTEBOOKS)

# nbval re-runs every notebook with the smoke preset; --nbval-lax compares only cells marked
# NBVAL_CHECK_OUTPUT (shapes, parameter counts), after masking what varies (nbval_sanitize.cfg).
test: $(STAMP)
	@mkdir -p $(STATE)
	rm -rf $(BUILD)/test-runs
	VAE_COURSE_PRESET=smoke VAE_RUNS_DIR=$(abspath $(BUILD))/test-runs \
	  $(BIN)/python -m pytest tests notebooks --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg -p no:cacheprovider

test-lib: $(STAMP)
	$(BIN)/python -m pytest tests -p no:cacheprovider

test-notebooks: $(STAMP)
	VAE_COURSE_PRESET=smoke VAE_RUNS_DIR=$(abspath $(BUILD))/test-runs \
	  $(BIN)/python -m pytest notebooks --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg -p no:cacheprovider

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks

# For maintainers: the committed notebooks carry the outputs of the quick preset.
refresh-notebooks: $(STAMP)
	@mkdir -p $(STATE)
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb"; \
	  VAE_COURSE_PRESET=$(PRESET) $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=-1 "$$nb" || exit 1; \
	done

clean:
	rm -rf $(BUILD)
