# The two commands a new user needs (see README.md), plus the benchmarks and the install.
.PHONY: demo test bench chaos soak sanitize fuzz build clean install install-files

PREFIX ?= /usr/local
DESTDIR ?=
SYSCONFDIR ?= /etc
BINDIR = $(PREFIX)/bin
LIBEXECDIR = $(PREFIX)/libexec
DATADIR = $(PREFIX)/share/medianest-worker
DOCDIR = $(PREFIX)/share/doc/medianest-worker
UNITDIR ?= $(PREFIX)/lib/systemd/system
# The binary to install; `make install` builds it in release mode first.
BINARY ?= .build/release/medianest-worker
UNITS = $(wildcard systemd/*.service systemd/*.timer)

demo: ## Run the worker end to end on a throwaway PostgreSQL and sample media.
	@bash scripts/demo.sh

test: ## Run the whole test suite against a throwaway PostgreSQL.
	@bash scripts/test.sh

sanitize: ## Run the whole suite under AddressSanitizer and the runtime, queue and pool tests under ThreadSanitizer (slow; not part of `make test`).
	@bash scripts/sanitize.sh

chaos: ## Break the worker on purpose (kill -9, restarts, partitions, full disk...) and print the loss table; not part of test.
	@bash scripts/chaos.sh

bench: ## Measure this project against its peers (ffprobe, md5sum, openssl, pgbench) in one run.
	@bash scripts/bench.sh

fuzz: ## Fuzz every parser of untrusted bytes with libFuzzer + ASan, FUZZ_SECONDS (default 600) per target.
	@bash scripts/fuzz.sh

soak: ## Run the daemon for SOAK_MINUTES (default 10) on a continuous mixed stream; fails if RSS or descriptors grow, or a job is lost or stuck.
	@bash scripts/soak.sh

build:
	swift build -c release

clean:
	rm -rf .build .build-asan .build-tsan .build-fuzz

install: build install-files ## Build in release mode and install under $(DESTDIR)$(PREFIX).

# Installs without building (BINARY= names the executable). The units are rewritten so their
# paths point into $(PREFIX) and $(SYSCONFDIR); an existing worker.env or worker.yaml is never overwritten.
install-files:
	@test -x "$(BINARY)" || { echo "$(BINARY) does not exist; run 'make install' or pass BINARY=" >&2; exit 1; }
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(LIBEXECDIR)" "$(DESTDIR)$(DATADIR)/migrations" "$(DESTDIR)$(DOCDIR)" \
		"$(DESTDIR)$(UNITDIR)" "$(DESTDIR)$(SYSCONFDIR)/medianest"
	install -m 0755 "$(BINARY)" "$(DESTDIR)$(BINDIR)/medianest-worker"
	install -m 0755 scripts/medianest-backup "$(DESTDIR)$(LIBEXECDIR)/medianest-backup"
	install -m 0644 migrations/*.sql migrations/README.md "$(DESTDIR)$(DATADIR)/migrations/"
	install -m 0644 README.md docs/OPERATIONS.md "$(DESTDIR)$(DOCDIR)/"
	for unit in $(UNITS); do \
		sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/usr/local/libexec/|$(LIBEXECDIR)/|g' \
		    -e 's|/usr/local/share/|$(PREFIX)/share/|g' -e 's|/etc/medianest/|$(SYSCONFDIR)/medianest/|g' \
		    "$$unit" >"$(DESTDIR)$(UNITDIR)/$$(basename "$$unit")" && chmod 0644 "$(DESTDIR)$(UNITDIR)/$$(basename "$$unit")" || exit 1; \
	done
	install -m 0644 config/worker.env.example "$(DESTDIR)$(SYSCONFDIR)/medianest/worker.env.example"
	install -m 0644 config/medianest-worker.yaml "$(DESTDIR)$(SYSCONFDIR)/medianest/worker.yaml.example"
	install -m 0644 config/grafana-dashboard.json "$(DESTDIR)$(DOCDIR)/grafana-dashboard.json"
	@if [ -e "$(DESTDIR)$(SYSCONFDIR)/medianest/worker.yaml" ]; then \
		echo "kept the existing $(DESTDIR)$(SYSCONFDIR)/medianest/worker.yaml (the new example is worker.yaml.example)"; \
	else \
		install -m 0640 config/medianest-worker.yaml "$(DESTDIR)$(SYSCONFDIR)/medianest/worker.yaml"; \
		echo "installed $(DESTDIR)$(SYSCONFDIR)/medianest/worker.yaml: edit it, check it with 'medianest-worker config check', then: chgrp medianest $(SYSCONFDIR)/medianest/worker.yaml"; \
	fi
	@if [ -e "$(DESTDIR)$(SYSCONFDIR)/medianest/worker.env" ]; then \
		echo "kept the existing $(DESTDIR)$(SYSCONFDIR)/medianest/worker.env (the new example is worker.env.example)"; \
	else \
		install -m 0640 config/worker.env.example "$(DESTDIR)$(SYSCONFDIR)/medianest/worker.env"; \
		echo "installed $(DESTDIR)$(SYSCONFDIR)/medianest/worker.env: edit it, then: chgrp medianest $(SYSCONFDIR)/medianest/worker.env"; \
	fi
