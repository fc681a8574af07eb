# The two commands a newcomer needs: `make demo` and `make test`. Both set up the environment first.
TASK ?= Plan a one-day workshop on durable workflows: research the topic, outline the agenda, and draft the invitation email.
VENV := .venv/bin

.PHONY: setup n8n demo test test-fast test-n8n lint

setup:
	bash scripts/setup.sh

demo: setup
	$(VENV)/swarmkeep run "$(TASK)"

# Node 24, n8n and the built community node (cached under ~/.cache/swarmkeep; minutes the first time only).
n8n:
	bash scripts/n8n.sh install
	bash scripts/n8n.sh build

test: setup n8n
	bash scripts/n8n.sh test
	$(VENV)/python -m pytest -q

test-n8n: setup n8n
	bash scripts/n8n.sh test
	$(VENV)/python -m pytest -q -m n8n

test-fast: setup
	$(VENV)/python -m pytest -q -m "not local_model and not n8n and not scale"

lint: setup
	$(VENV)/ruff check . && $(VENV)/mypy swarmkeep workflows activities inference api
