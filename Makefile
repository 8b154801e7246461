# The two commands of the README: `make run` (the embedded default) and `make test`.
.PHONY: install run test

install:
	bash .ci/install

run: install
	.venv/bin/snakemake --cores 8 all

test: install
	.venv/bin/python -m pytest -q tests
