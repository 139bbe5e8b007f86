.PHONY: all lint typecheck test test-image docs

all: lint typecheck test

lint:
	ruff check orchestrator providers tests scripts
	ruff format --check orchestrator providers
	lint-imports

typecheck:
	mypy

test:
	./scripts/test

test-image:
	./scripts/build-test-image.sh

docs:
	python3 -m orchestrator.docgen .
