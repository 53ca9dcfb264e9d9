# Strata — make demo runs the whole job on this machine; make test runs every test.
SHELL := /bin/bash
GO ?= go
export PATH := $(CURDIR)/bin:$(PATH):/usr/sbin

.PHONY: all deps build demo up run down clean-demo test unit e2e bench bench-micro bench-archive bench-fleet fuzz histories lint fmt clean

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
##   FLAVOR=mysql (make demo FLAVOR=mysql): the demo server is MySQL 9.7 (the chroot deps builds under
##   .cache/mysql), backed up by Strata's clone method
STORAGE ?= local
export STORAGE
FLAVOR ?= mariadb
export FLAVOR
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

## bench: Strata beside the pipelines a DBA types by hand, in one run, interleaved, medians of
##   BENCH_RUNS runs, with ratios: full backup (zstd -1 and -3) vs mariabackup --stream | zstd -T2,
##   incremental vs --incremental-basedir, restore to a started server vs zstd -d | mbstream,
##   --prepare, --move-back, start; the write stall of a 4-thread sysbench load during each backup;
##   PITR replay vs mariadb-binlog | mariadb; archive lag; logical backup vs mariadb-dump | zstd and
##   mydumper, its restore into a new datadir vs zstd -dc | mariadb and myloader into a fresh server;
##   CPU-seconds, peak memory, orchestration overhead, history events. On a sysbench set of
##   BENCH_SIZE (default 2G) built once under BENCH_DIR; JSON in BENCH_OUT. Then the codecs' CPU
##   cost on that set's stream. About 50 minutes (the logical section alone: about 21).
BENCH_SIZE ?= 2G
BENCH_RUNS ?= 3
BENCH_DIR ?= $(CURDIR)/.cache/bench
BENCH_OUT ?= $(BENCH_DIR)/results-$(BENCH_SIZE).json
BENCH_ARGS ?=
bench: deps
	BENCH=1 bash scripts/setup.sh
	bash scripts/bench-dataset.sh $(BENCH_DIR)/sysbench-$(BENCH_SIZE) $(BENCH_SIZE)
	$(GO) test -run '^$$' -bench '^BenchmarkPerf$$' -benchtime 1x -timeout 90m ./bench/perf/ -args \
		-perf.dataset=$(BENCH_DIR)/sysbench-$(BENCH_SIZE) -perf.runs=$(BENCH_RUNS) -perf.out=$(BENCH_OUT) \
		-perf.stream=$(BENCH_DIR)/stream-$(BENCH_SIZE).xb $(BENCH_ARGS)
	STRATA_BENCH_STREAM=$(BENCH_DIR)/stream-$(BENCH_SIZE).xb $(GO) test -run '^$$' -bench '^BenchmarkCodec$$' -benchtime 1x ./internal/pipeline/

## bench-micro: the data path's own benchmarks: codecs (memory storage), chunks in flight on local
##   disk and (fake) GCS with latency; binlog archive lag under 4 writers; the replay package
bench-micro: deps
	$(GO) test -run '^$$' -bench . -benchtime 3x ./internal/pipeline/
	$(GO) test -run '^$$' -bench '^BenchmarkArchiveLag$$' -benchtime 1x ./internal/binlog/
	$(GO) test -run '^$$' -bench . -benchtime 1x ./internal/replay/

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
##   pre-flight wait and its failure (preflight), the single-table restore (table_restore), logical backups
##   restored into a new datadir, to a point in time, and loaded into a running server across a killed agent (logical)
HISTORY_TESTS ?= TestIncrementalAndDifferentialChains|TestVerifyDetectsCorruptionAndPruneKeepsChainsRestorable|TestPointInTimeRestoreToTimeGTIDAndPosition|TestLongTransactionMakesPreflightWaitThenFail|TestEntitySerialisesUpdatesTakesSignalsAndRejectsBadRequests|TestFleetLimitBoundsConcurrentBackups|TestSchedulesApplyReapplyRemoveTrigger|TestDrillPassesThenACorruptChunkFailsAndMarksTheBackup|TestDrillPointInTimeHitsItsGTIDTarget|TestTableRestoreBringsBackADroppedTableUnderWrites|TestLogicalBackupUnderWritesIsAnExactPrefixAndOpensAPITRWindow|TestKilledAgentMidLogicalLoadFinishesWithoutDuplicates
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
