package tests

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage/gcs"
)

// gcsBucket and gcsPrefix locate the repository in the fake GCS.
const (
	gcsBucket = "strata-e2e"
	gcsPrefix = "repo"
)

// fakeGCS is an in-process fake-gcs-server (memory backend) served over
// HTTP on 127.0.0.1, so that `strata agent` child processes reach it too.
// Uploads and media downloads can be slowed down while a test runs.
type fakeGCS struct {
	srv  *fakestorage.Server
	http *httptest.Server
	// uploadDelay and downloadDelay (nanoseconds) delay each object
	// upload request and each object download.
	uploadDelay, downloadDelay atomic.Int64
	// blockDeletes, when set, holds every object delete request whose
	// object name contains it until it is cleared or the client goes
	// away; blockedDeletes counts the requests held so far.
	blockDeletes   atomic.Pointer[string]
	blockedDeletes atomic.Int64
}

func newFakeGCS(t *testing.T) *fakeGCS {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", NoListener: true})
	require.NoError(t, err)
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: gcsBucket})
	g := &fakeGCS{srv: srv}
	h := srv.HTTPHandler()
	g.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := g.blockDeletes.Load(); p != nil && r.Method == http.MethodDelete && strings.Contains(r.URL.Path, *p) {
			g.blockedDeletes.Add(1)
			for g.blockDeletes.Load() != nil {
				select {
				case <-time.After(20 * time.Millisecond):
				case <-r.Context().Done():
					return
				}
			}
		}
		var d time.Duration
		switch {
		case gcs.IsUpload(r):
			d = time.Duration(g.uploadDelay.Load())
		case r.Method == http.MethodGet && (r.URL.Query().Get("alt") == "media" || !strings.HasPrefix(r.URL.Path, "/storage/v1/")):
			d = time.Duration(g.downloadDelay.Load())
		}
		if d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		g.http.CloseClientConnections()
		g.http.Close()
		srv.Stop()
	})
	return g
}

// host is the value of $STORAGE_EMULATOR_HOST for this server.
func (g *fakeGCS) host() string { return strings.TrimPrefix(g.http.URL, "http://") }

// withGCS makes the stack's repository the fake GCS bucket (with a prefix).
// $STORAGE_EMULATOR_HOST points every process of the test at it: the
// in-process worker and agent, `strata agent` children and the CLI. With
// openRepo, the in-process worker and agent use that repository instead
// (e.g. the same bucket through a faulty transport).
func withGCS(t *testing.T, g *fakeGCS, openRepo func(context.Context, *config.Config) (*repo.Repo, error)) stackOption {
	t.Setenv("STORAGE_EMULATOR_HOST", g.host())
	return stackOptionFunc(func(c *stackSetup) {
		c.storage = "storage:\n  type: gcs\n  gcs:\n    bucket: " + gcsBucket + "\n    prefix: " + gcsPrefix
		c.openRepo = openRepo
	})
}

// objectCount counts the objects of the fake bucket.
func (g *fakeGCS) objectCount(t *testing.T) int {
	t.Helper()
	res, err := g.srv.ListObjectsWithOptionsPaginated(gcsBucket, fakestorage.ListOptions{Prefix: gcsPrefix + "/"})
	require.NoError(t, err)
	return len(res.Objects)
}

func TestGCSFullAndIncrementalBackupRestoreAndVerify(t *testing.T) {
	g := newFakeGCS(t)
	s := newStack(t, withGCS(t, g, nil))
	require.Contains(t, s.repo.String(), "gs://"+gcsBucket+"/"+gcsPrefix)
	db := s.numbered()
	require.NoError(t, demo.Seed(s.ctx, db, "demo", 16<<20, nil))
	insertRows(t, db, 1, 100)
	atFull, err := demo.Checksums(s.ctx, db, "demo")
	require.NoError(t, err)
	full := s.backup("full1", "full")

	// Changes for the incremental: new rows and an updated demo table.
	insertRows(t, db, 101, 250)
	_, err = db.Exec("UPDATE demo.customers SET full_name = CONCAT(full_name, ' (moved)') WHERE id % 7 = 0")
	require.NoError(t, err)
	atInc, err := demo.Checksums(s.ctx, db, "demo")
	require.NoError(t, err)
	require.NotEmpty(t, demo.CompareChecksums(atFull, atInc), "the incremental has changes to restore")
	inc := s.backup("inc1", "incremental")
	assert.Equal(t, "full1", inc.ParentID)
	assert.Equal(t, full.ToLSN, inc.FromLSN)
	t.Logf("full: %d raw / %d stored bytes in %d chunks, %.1f MB/s; incremental: %d raw / %d stored bytes in %d chunks; %d objects in gs://%s/%s",
		full.RawSize, full.StoredSize, full.Chunks, full.ThroughputMBps, inc.RawSize, inc.StoredSize, inc.Chunks, g.objectCount(t), gcsBucket, gcsPrefix)

	// The catalog and the CLI read the bucket.
	assert.Equal(t, []string{"full1", "inc1"}, s.backupIDs("db1"))
	out, err := s.cli("ls", "db1")
	require.NoError(t, err, out)
	assert.Contains(t, out, "full1")
	assert.Contains(t, out, "inc1")

	// Both restore, with the data of their time.
	for _, c := range []struct {
		id    string
		rows  int
		sums  map[string]string
		chain []string
	}{
		{"full1", 100, atFull, []string{"full1"}},
		{"inc1", 250, atInc, []string{"full1", "inc1"}},
	} {
		rdb, res := s.restoreAndOpen(c.id)
		assert.Equal(t, c.chain, res.Chain)
		n, hi := countRows(t, rdb)
		assert.Equal(t, c.rows, n, "rows restored from %s", c.id)
		assert.Equal(t, c.rows, hi, "no gap in %s", c.id)
		got, err := demo.Checksums(s.ctx, rdb, "demo")
		require.NoError(t, err)
		assert.Empty(t, demo.CompareChecksums(c.sums, got), c.id)
		t.Logf("restore %s from GCS: chain %v, %d bytes downloaded, %.2fs (download %.2fs, prepare %.2fs)",
			c.id, res.Chain, res.Stats.DownloadedBytes, res.Seconds, res.Stats.FetchSeconds, res.Stats.PrepareSeconds)
	}

	// VerifyWorkflow reads every chunk back from the bucket: clean.
	res := s.verify("db1", "")
	require.True(t, res.OK, "%v", res.Report.Problems)
	assert.Len(t, res.Report.Checked, 2)
	out, err = s.cli("verify", "db1")
	require.NoError(t, err, "strata verify db1: %s", out)
	t.Logf("strata verify db1:\n%s", out)
}
