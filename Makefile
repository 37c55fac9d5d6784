# The two commands of the README. Each creates .venv when missing and installs the project.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf runs/demo
	$(BIN)/vaekit train --config configs/digits.json --out runs/demo
	$(BIN)/vaekit evaluate runs/demo
	$(BIN)/vaekit report runs/demo
	@echo "demo run: runs/demo (report.html, samples.png, reconstructions.png, curves.png, samples/)"

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/train_speed.py

clean:
	rm -rf $(VENV) runs build src/*.egg-info
