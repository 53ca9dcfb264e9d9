# Strata — make demo runs the whole job on this machine; make test runs every test.
SHELL := /bin/bash
GO ?= go
export PATH := $(CURDIR)/bin:$(PATH):/usr/sbin

.PHONY: all deps build demo up run down clean-demo test unit e2e bench bench-archive bench-fleet fuzz histories lint fmt clean

all: build

## deps: install MariaDB (server, backup, client) from Debian and build bin/temporal from source (idempotent)
deps:
	@scripts/setup.sh

## build: build bin/strata
build:
	$(GO) build -o bin/strata ./cmd/strata

## demo: start Temporal, a demo MariaDB with generated data, worker and agent; back up, restore, compare; stop
##   STORAGE=gcs (make demo STORAGE=gcs): the repository is bucket strata-demo on the GCS emulator
##   bin/fake-gcs-server (built by deps), on 127.0.0.1, port FAKE_GCS_PORT (default 4443)
STORAGE ?= local
export STORAGE
demo: deps build
	@scripts/demo.sh demo

## up / run / down: the demo in steps (leave the stack running between them)
up: deps build
	@scripts/demo.sh up
run: build
	@scripts/demo.sh run
down:
	@scripts/demo.sh down
clean-demo:
	@scripts/demo.sh clean

## test: unit tests and end-to-end tests (real MariaDB, mariabackup and Temporal dev server)
test: deps
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /tests)

e2e: deps
	$(GO) test -count=1 -timeout 25m -v ./tests/

## bench: throughput benchmarks of the data path, in MB/s of raw stream: codecs (memory storage), and
##   1/4/8 chunks in flight on local disk, in-process fake GCS and fake GCS with 20 ms latency;
##   binlog archive lag (commit to durable) under 4 writers; PITR replay time against the write
##   time and against mariadb-binlog | mariadb; the 7-day archive's reads at scale are make bench-archive
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 3x ./internal/pipeline/
	$(GO) test -run '^$$' -bench '^BenchmarkArchiveLag$$' -benchtime 1x ./internal/binlog/
	$(GO) test -run '^$$' -bench . -benchtime 1x ./internal/replay/
	@echo "(the 7-day archive's reads: make bench-archive)"

## bench-archive: a 7-day binlog archive at 1-s segments (604,800 segments): resume-point lookup, PITR
##   planning and ls/status, after roll-up and after compaction, on the memory backend and on the GCS emulator
##   without and with 20 ms per request; times and storage requests by kind, and the operations per day
##   for flush_interval / max_segment_size (about 5 minutes, about 5.5 GiB of memory)
bench-archive:
	$(GO) test -run '^$$' -bench '^BenchmarkWeekArchive$$' -benchtime 1x -timeout 30m ./internal/binlog/

## bench-fleet: 1,000 instances' Temporal Schedules (schedule apply of a policy) fire full backups every minute for 3 minutes against one
##   `strata worker` process and the dev server, with simulated agents (sleep and heartbeat under the real
##   activity names); prints schedule-to-start latency percentiles, history events per backup, the worker's
##   CPU and memory, and whether the limits held (about 10 minutes). Fewer: make bench-fleet FLEET_ARGS=-fleet.instances=100
bench-fleet: deps
	$(GO) test -run '^$$' -bench '^BenchmarkFleet$$' -benchtime 1x -timeout 40m ./bench/fleet/ -args $(FLEET_ARGS)

## histories: record the histories of real runs of every workflow (end-to-end tests against the Temporal
##   dev server) into workflows/testdata/histories/<date>-<time>/; TestReplayRecordedHistories replays every
##   recorded set against today's workflow code. Record a new set whenever a workflow changes; keep the old.
##   HISTORY_TESTS runs every workflow type (TestReplayRecordedHistories fails for a registered type without one):
##   backup and restore (chains), verify and retention (verify_prune), the binlog archive (pitr), the
##   pre-flight wait and its failure (preflight)
HISTORY_TESTS ?= TestIncrementalAndDifferentialChains|TestVerifyDetectsCorruptionAndPruneKeepsChainsRestorable|TestPointInTimeRestoreToTimeGTIDAndPosition|TestLongTransactionMakesPreflightWaitThenFail|TestEntitySerialisesUpdatesTakesSignalsAndRejectsBadRequests|TestFleetLimitBoundsConcurrentBackups|TestSchedulesApplyReapplyRemoveTrigger|TestDrillPassesThenACorruptChunkFailsAndMarksTheBackup|TestDrillPointInTimeHitsItsGTIDTarget
histories: deps
	@dir=workflows/testdata/histories/$$(date -u +%Y%m%d-%H%M); mkdir -p $$dir; \
	STRATA_RECORD_HISTORIES=$(CURDIR)/$$dir $(GO) test -count=1 -timeout 25m -run '^($(HISTORY_TESTS))$$' ./tests/ && \
	ls $$dir

## fuzz: run each fuzz target (decoders of what is read from the repository) for FUZZTIME;
##   their seed corpora run in every `go test`
FUZZTIME ?= 30s
FUZZ_TARGETS := FuzzDecode:./internal/manifest/ FuzzDecodeSegment:./internal/binlog/ FuzzDecodeRollup:./internal/binlog/ FuzzDecodeKeyObject:./internal/repo/
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t%%:*} ($${t#*:}) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) "$${t#*:}"; \
	done

## lint: gofmt, go vet, staticcheck and workflowcheck (non-determinism in workflow code: time, rand,
##   goroutines, map ranges, globals; see its -config for justified ignores)
WORKFLOWCHECK := go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./...
	$(GO) run $(WORKFLOWCHECK) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -f bin/strata
