# The two commands of the README. Each creates .venv when missing and installs the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,chem,serve]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/vaekit train --config configs/digits.json --out runs/demo
	$(BIN)/vaekit evaluate runs/demo
	$(BIN)/vaekit report runs/demo
	@echo "demo run: runs/demo (report.html, samples.png, reconstructions.png, curves.png, samples/)"

# Test processes (pytest-xdist), each running whole files in the order collected (tests/conftest.py
# puts the longest file first and gives each process one thread).
TEST_JOBS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder --durations=15

DATA_DIR ?= $(or $(VAEKIT_DATA_DIR),../shared/data)

bench: $(STAMP)
	$(BIN)/python bench/train_speed.py --data-dir $(DATA_DIR)

clean:
	rm -rf $(VENV) runs build src/*.egg-info
