# Single entry point. Every target creates the virtual environment on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
UI_STAMP := $(VENV)/.installed-ui-stamp
DEMO_G := checkpoints/demo/latest_net_G.pth

# Under CI (CI=true) `make test` also installs the browser test's Python packages.
TEST_DEPS := $(STAMP) $(if $(filter true 1 yes,$(CI)),$(UI_STAMP))

.PHONY: venv test demo bench clean ui-deps editor screenshot

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	touch $(STAMP)

# selenium for the editor's browser test; the browser itself comes from the system:
# apt-get install chromium chromium-driver (.ci/run does this)
$(UI_STAMP): requirements-ui.txt $(STAMP)
	$(BIN)/pip install -q -r requirements-ui.txt
	touch $(UI_STAMP)

venv: $(STAMP)

ui-deps: $(UI_STAMP)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  echo "note: no Chromium found; the browser test needs: apt-get install chromium chromium-driver"

test: $(TEST_DEPS)
	$(BIN)/python -m pytest -q tests -n 2 --dist loadfile --durations=10

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

$(DEMO_G): | $(STAMP)
	$(BIN)/python scripts/demo.py

# the style editor on the demo model (trained first when missing); prints the URL
editor: $(STAMP) $(DEMO_G)
	$(BIN)/python edit_app.py --demo

screenshot: $(UI_STAMP) $(DEMO_G)
	$(BIN)/python scripts/editor_screenshot.py --out docs/editor.png --class_index 2 --colour_class 5 --colour "#1040ff" --width 1300 --height 830

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_spse.py
	$(BIN)/python benchmarks/bench_model.py
	$(BIN)/python benchmarks/bench_editor.py

clean:
	rm -rf $(VENV) results checkpoints/demo* datasets/demo
