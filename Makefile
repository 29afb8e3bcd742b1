# make demo: set up, train N2S and N2SP on the offline demo set at a CPU size, test, report.
# make test: set up and run the test suite, on both cores (pytest-xdist, a test file a worker).
# make web: set up with the web extras and start the web demo (python demo.py).
# make extras: add the benchmarks' and download.py's extras (bm3d, gdown).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU-sized demo run (2 cores: 4 min 38 s measured once with the venv installed; README): width 16, batch 16.
DEMO_FILTERS ?= 16
DEMO_BATCH ?= 16
DEMO_STEPS ?= 600
DEMO_PRO_STEPS ?= 100
DEMO_FLAGS = --dataset demo --filters $(DEMO_FILTERS) --batch-size $(DEMO_BATCH) \
             --steps $(DEMO_STEPS) --save-steps 100 --log-steps 50
DEMO_OUT ?= results/demo
# a model's last checkpoint: present when its training is complete (an interrupted run resumes)
DEMO_N2S_DONE = trained_models/demo-N2S/ckpt-$(DEMO_STEPS).index
DEMO_N2SP_DONE = trained_models/demo-N2SP/ckpt-$(DEMO_STEPS).index

.PHONY: demo test venv web extras clean-demo

venv: $(VENV)/.installed

extras: $(VENV)/.extras-installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.web-installed: $(VENV)/.installed requirements-web.txt
	$(PY) -m pip install --quiet -r requirements-web.txt
	touch $@

$(VENV)/.extras-installed: $(VENV)/.installed requirements-extra.txt
	$(PY) -m pip install --quiet -r requirements-extra.txt
	touch $@

$(VENV)/.test-installed: $(VENV)/.web-installed $(VENV)/.extras-installed requirements-test.txt \
                         requirements-bioimageio.txt requirements-napari.txt pyproject.toml
	$(PY) -m pip install --quiet -r requirements-test.txt
	$(PY) -m pip install --quiet --no-deps -e .  # the napari plugin's entry point (tests find it)
	touch $@

demo: venv
	mkdir -p $(DEMO_OUT)
	@if [ -e $(DEMO_N2S_DONE) ] && [ -e $(DEMO_N2SP_DONE) ]; then echo "the demo models are" \
	    "trained (trained_models/demo-N2S, demo-N2SP): testing them again; to retrain them," \
	    "run 'make clean-demo', then 'make demo'"; fi
	[ -e $(DEMO_N2S_DONE) ] || $(PY) train.py $(DEMO_FLAGS) --name demo-N2S
	[ -e $(DEMO_N2SP_DONE) ] || \
	    $(PY) train_pro.py $(DEMO_FLAGS) --pro-steps $(DEMO_PRO_STEPS) --name demo-N2SP
	$(PY) test.py --dataset demo --name demo-N2S --csv $(DEMO_OUT)/n2s_per_image.csv
	$(PY) test_pro.py --dataset demo --name demo-N2SP --csv $(DEMO_OUT)/n2sp_per_image.csv
	$(PY) test_single.py Denoising_data/demo/test/noisy_camera.png --name demo-N2SP \
	    --output $(DEMO_OUT)/camera_denoised.png --figure $(DEMO_OUT)/camera_figure.png
	$(PY) report.py --n2s demo-N2S --n2sp demo-N2SP --out $(DEMO_OUT)

test: $(VENV)/.test-installed
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=20 tests

web: $(VENV)/.web-installed
	$(PY) demo.py

# Forget the demo models and results (the demo data set is kept).
clean-demo:
	rm -rf trained_models/demo-N2S trained_models/demo-N2SP $(DEMO_OUT)
