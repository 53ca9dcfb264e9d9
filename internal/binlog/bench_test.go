package binlog

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/strata-backup/strata/internal/benchload"
	"github.com/strata-backup/strata/internal/storage/local"
	"github.com/strata-backup/strata/internal/testdb"
)

// BenchmarkArchiveLag measures, under a steady 4-thread write load, the time
// from each transaction's commit to the moment the segment holding it is
// durable in a local-disk repository, with the default 1 s flush interval.
func BenchmarkArchiveLag(b *testing.B) {
	srv := testdb.ForTest(b, testdb.Options{})
	db, err := srv.DB("")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const rows = 20000
	if err := benchload.Prepare(context.Background(), db, "sb", rows); err != nil {
		b.Fatal(err)
	}
	repoDir, err := local.New(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	st := &Store{B: repoDir, Instance: "bench"}

	type durable struct {
		seq uint64
		at  time.Time
	}
	var (
		mu      sync.Mutex
		marks   []durable
		last    Status
		archErr error
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, archErr = Run(ctx, st, db, Source{Host: "127.0.0.1", Port: uint16(srv.Port), User: "root", Password: srv.Password,
			Flavor: "mariadb", ReplicaID: 4000000077}, Options{Progress: func(s Status) {
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			last = s
			if g, err := ParseMariaGTID(s.LastGTID); err == nil && (len(marks) == 0 || marks[len(marks)-1].seq < g.Seq) {
				marks = append(marks, durable{g.Seq, now})
			}
		}})
	}()
	time.Sleep(2 * time.Second) // let the archiver catch up with the prepared rows
	const threads, dur = 4, 20 * time.Second
	commits, err := benchload.Run(context.Background(), db, "sb", rows, threads, dur, 0)
	if err != nil {
		b.Fatal(err)
	}
	lastSeq := uint64(0)
	for _, c := range commits {
		if g, err := ParseMariaGTID(c.GTID); err == nil && g.Seq > lastSeq {
			lastSeq = g.Seq
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		ok := len(marks) > 0 && marks[len(marks)-1].seq >= lastSeq
		mu.Unlock()
		if ok || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if archErr != nil && ctx.Err() == nil {
		b.Fatal(archErr)
	}

	var lags []time.Duration
	mu.Lock()
	for _, c := range commits {
		g, err := ParseMariaGTID(c.GTID)
		if err != nil {
			continue
		}
		i := sort.Search(len(marks), func(i int) bool { return marks[i].seq >= g.Seq })
		if i < len(marks) {
			lags = append(lags, max(0, marks[i].at.Sub(c.At)))
		}
	}
	st2 := last
	mu.Unlock()
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	if len(lags) == 0 {
		b.Fatal("no lag measured")
	}
	pct := func(p int) float64 { return float64(lags[min(len(lags)-1, len(lags)*p/100)].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(commits))/dur.Seconds(), "txn/s")
	b.ReportMetric(pct(50), "p50_ms")
	b.ReportMetric(pct(99), "p99_ms")
	b.ReportMetric(float64(lags[len(lags)-1].Microseconds())/1000, "max_ms")
	b.Logf("%d transactions by %d threads in %s (%.0f txn/s); commit-to-durable lag over %d transactions: p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms; "+
		"archiver's own receipt-to-durable p99 %.0f ms; %d segments",
		len(commits), threads, dur, float64(len(commits))/dur.Seconds(), len(lags), pct(50), pct(90), pct(99),
		float64(lags[len(lags)-1].Microseconds())/1000, st2.LagP99Ms, st2.Segments)
}
