package gcs_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/storage/gcs"
)

// TestOnRetryReportsEveryRetry fails every other request and checks that
// OnRetry is called once per retried request, with the operation retried.
func TestOnRetryReportsEveryRetry(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	var mu sync.Mutex
	retries := map[string]int{}
	ft := &gcs.FaultTransport{Base: http.DefaultTransport}
	b := newBackend(t, gcs.Options{
		Bucket: newBucket(t, srv), Endpoint: srv.URL(), HTTPClient: &http.Client{Transport: ft},
		OnRetry: func(op string) {
			mu.Lock()
			defer mu.Unlock()
			retries[op]++
		},
	})
	ft.FailEvery = 2 // after New's bucket check
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		require.NoError(t, b.Put(ctx, k, strings.NewReader("data"), 4))
		rc, err := b.Get(ctx, k)
		require.NoError(t, err)
		_, err = io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		_, err = b.Stat(ctx, k)
		require.NoError(t, err)
		_, err = b.List(ctx, "")
		require.NoError(t, err)
		require.NoError(t, b.Delete(ctx, k))
	}
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for op, n := range retries {
		assert.Contains(t, []string{"get", "put", "stat", "list", "delete"}, op)
		total += n
	}
	require.Greater(t, ft.Faults(), int64(5))
	assert.Equal(t, int(ft.Faults()), total, "retries by op: %v", retries)
	assert.Len(t, retries, 5, "every operation was retried at least once: %v", retries)
}
