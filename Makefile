# The two commands a newcomer needs: `make demo` and `make test`. Both set up the environment first.
TASK ?= Plan a one-day workshop on durable workflows: research the topic, outline the agenda, and draft the invitation email.
VENV := .venv/bin

.PHONY: setup demo test test-fast lint

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/swarmkeep run "$(TASK)"

test: setup
	$(VENV)/python -m pytest -q

test-fast: setup
	$(VENV)/python -m pytest -q -m "not local_model"

lint: setup
	$(VENV)/ruff check . && $(VENV)/mypy swarmkeep workflows activities inference api
