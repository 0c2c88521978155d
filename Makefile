# The two commands a new user needs (see README.md), plus the benchmarks.
.PHONY: demo test bench build clean

demo: ## Run the worker end to end on a throwaway PostgreSQL and sample media.
	@bash scripts/demo.sh

test: ## Run the whole test suite against a throwaway PostgreSQL.
	@bash scripts/test.sh

bench: ## Measure this project against its peers (ffprobe, md5sum, openssl, pgbench) in one run.
	@bash scripts/bench.sh

build:
	swift build -c release

clean:
	rm -rf .build
