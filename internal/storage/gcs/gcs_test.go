package gcs_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/backend"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/gcs"
	"github.com/strata-backup/strata/internal/storage/storagetest"
)

// fastRetry keeps retries quick in tests.
var fastRetry = gcs.RetryOptions{Initial: time.Millisecond, Max: 10 * time.Millisecond, Multiplier: 2, MaxAttempts: 10}

// newServer starts an in-process fake-gcs-server listening on 127.0.0.1.
func newServer(t testing.TB, initial ...fakestorage.Object) *fakestorage.Server {
	t.Helper()
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme:         "http",
		Host:           "127.0.0.1",
		Port:           0,
		InitialObjects: initial,
		NoListener:     false,
	})
	require.NoError(t, err)
	t.Cleanup(srv.Stop)
	return srv
}

var bucketSeq atomic.Int64

// newBucket creates a fresh bucket on srv.
func newBucket(t testing.TB, srv *fakestorage.Server) string {
	t.Helper()
	name := fmt.Sprintf("strata-test-%d", bucketSeq.Add(1))
	srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: name})
	return name
}

func newBackend(t testing.TB, o gcs.Options) *gcs.Backend {
	t.Helper()
	if o.Retry == (gcs.RetryOptions{}) {
		o.Retry = fastRetry
	}
	b, err := gcs.New(context.Background(), o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return newBackend(t, gcs.Options{Bucket: newBucket(t, srv), Endpoint: srv.URL()})
	})
}

func TestConformanceWithPrefix(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		bucket := newBucket(t, srv)
		// Objects around the prefix that the backend must never see.
		for _, name := range []string{"strata/repo", "strata/repo2/x", "strata/rep", "other/inst/backups/b1/manifest.json", "top"} {
			srv.CreateObject(fakestorage.Object{
				ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: name},
				Content:     []byte("noise"),
			})
		}
		return newBackend(t, gcs.Options{Bucket: bucket, Prefix: "/strata/repo/", Endpoint: srv.URL()})
	})
}

// TestConformanceSmallChunks runs the suite with the smallest chunk size, so
// that objects above 256 KiB (and the cancelled endless stream) go through
// resumable multi-request uploads.
func TestConformanceSmallChunks(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		return newBackend(t, gcs.Options{Bucket: newBucket(t, srv), Prefix: "p", Endpoint: srv.URL(), ChunkSize: 256 << 10})
	})
}

// TestConformanceUnderFaults runs the suite with a third of the requests
// failing with 503 and added latency: retries must hide every fault.
func TestConformanceUnderFaults(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	var faults, requests int64
	t.Run("suite", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Backend {
			bucket := newBucket(t, srv) // created directly, not through the faulty transport
			ft := &gcs.FaultTransport{Base: http.DefaultTransport, FailEvery: 5, Rate: 0.2, Seed: 42, Latency: 200 * time.Microsecond}
			t.Cleanup(func() {
				faults += ft.Faults()
				requests += ft.Requests()
			})
			return newBackend(t, gcs.Options{
				Bucket: bucket, Endpoint: srv.URL(), ChunkSize: 256 << 10,
				HTTPClient: &http.Client{Transport: ft},
				Retry:      gcs.RetryOptions{Initial: time.Millisecond, Max: 5 * time.Millisecond, MaxAttempts: 30},
			})
		})
	})
	t.Logf("%d of %d requests got an injected 503", faults, requests)
	assert.Greater(t, faults, requests/5, "faults must have been injected")
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func readAll(t *testing.T, b storage.Backend, key string) []byte {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	require.NoError(t, err, "get %s", key)
	defer rc.Close()
	data, err := io.ReadAll(rc)
	require.NoError(t, err, "read %s", key)
	return data
}

// TestFaultInjection checks every operation through a transport that fails
// every other request and adds latency.
func TestFaultInjection(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	ft := &gcs.FaultTransport{Base: http.DefaultTransport, FailEvery: 2, Latency: time.Millisecond}
	b := newBackend(t, gcs.Options{
		Bucket: newBucket(t, srv), Prefix: "repo", Endpoint: srv.URL(), ChunkSize: 256 << 10,
		HTTPClient: &http.Client{Transport: ft},
	})
	ctx := context.Background()
	objects := map[string][]byte{
		"small":       []byte("hello"),
		"empty":       nil,
		"multi/chunk": randomBytes(t, 1<<20+17), // 5 chunks
	}
	for k, v := range objects {
		require.NoError(t, b.Put(ctx, k, bytes.NewReader(v), int64(len(v))), k)
	}
	// Unknown size, several chunks.
	stream := randomBytes(t, 700<<10)
	require.NoError(t, b.Put(ctx, "stream", bytes.NewReader(stream), -1))
	objects["stream"] = stream

	for k, v := range objects {
		assert.Equal(t, len(v), len(readAll(t, b, k)), k)
		assert.True(t, bytes.Equal(v, readAll(t, b, k)), k)
		info, err := b.Stat(ctx, k)
		require.NoError(t, err, k)
		assert.Equal(t, int64(len(v)), info.Size, k)
	}
	infos, err := b.List(ctx, "")
	require.NoError(t, err)
	assert.Len(t, infos, len(objects))
	err = b.Put(ctx, "small", strings.NewReader("other"), 5)
	assert.ErrorIs(t, err, storage.ErrExists, "a retried Put must never overwrite")
	for k := range objects {
		require.NoError(t, b.Delete(ctx, k))
	}
	infos, err = b.List(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, infos)

	t.Logf("%d of %d requests got an injected 503", ft.Faults(), ft.Requests())
	assert.GreaterOrEqual(t, ft.Faults(), ft.Requests()/2-1, "every other request must have failed")
	assert.Greater(t, ft.Faults(), int64(20))
}

// TestLostUploadResponses makes uploads reach the server but lose their
// response: the retry then gets 412 although this Put wrote the object, and
// Put must report success — but still ErrExists when another writer won.
func TestLostUploadResponses(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	bucket := newBucket(t, srv)
	ft := &gcs.FaultTransport{Base: http.DefaultTransport, FailEvery: 1, Match: firstAttemptOfUpload(), LoseResponses: true}
	b := newBackend(t, gcs.Options{Bucket: bucket, Endpoint: srv.URL(), HTTPClient: &http.Client{Transport: ft}})
	ctx := context.Background()
	for i := range 10 {
		key := fmt.Sprintf("obj/%d", i)
		data := randomBytes(t, 1000*i)
		require.NoError(t, b.Put(ctx, key, bytes.NewReader(data), int64(len(data))), key)
		assert.Equal(t, data, readAll(t, b, key))
	}
	assert.Equal(t, int64(10), ft.Faults(), "every first upload attempt lost its response")

	// Another writer's object: the 412 is a genuine conflict.
	other := newBackend(t, gcs.Options{Bucket: bucket, Endpoint: srv.URL()})
	require.NoError(t, other.Put(ctx, "taken", strings.NewReader("theirs"), 6))
	err := b.Put(ctx, "taken", strings.NewReader("theirs"), 6)
	assert.ErrorIs(t, err, storage.ErrExists, "identical content from another writer is still a conflict")
	assert.Equal(t, int64(11), ft.Faults())
}

// TestLostResumableResponses loses the response of one request of a
// resumable upload (session start, a middle chunk, the last chunk). Whatever
// the server does with the repeated request, Put must either succeed with
// the right content or fail and leave no object.
func TestLostResumableResponses(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	for _, tc := range []struct {
		name  string
		match func(contentRange string, query url.Values) bool
	}{
		{"start", func(cr string, q url.Values) bool { return q.Get("upload_id") == "" }},
		{"middle-chunk", func(cr string, q url.Values) bool { return strings.HasPrefix(cr, "bytes 262144-") }},
		{"last-chunk", func(cr string, q url.Values) bool { return cr != "" && !strings.HasSuffix(cr, "/*") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var matched atomic.Int64
			ft := &gcs.FaultTransport{Base: http.DefaultTransport, FailEvery: 1, LoseResponses: true, Match: func(r *http.Request) bool {
				return gcs.IsUpload(r) && tc.match(r.Header.Get("Content-Range"), r.URL.Query()) && matched.Add(1) == 1
			}}
			b := newBackend(t, gcs.Options{Bucket: newBucket(t, srv), Endpoint: srv.URL(), ChunkSize: 256 << 10, HTTPClient: &http.Client{Transport: ft}})
			data := randomBytes(t, 600<<10)
			err := b.Put(context.Background(), "obj", bytes.NewReader(data), int64(len(data)))
			require.Equal(t, int64(1), ft.Faults())
			if err != nil {
				t.Logf("Put failed (acceptable if no object remains): %v", err)
				_, serr := b.Stat(context.Background(), "obj")
				assert.ErrorIs(t, serr, storage.ErrNotFound, "a failed Put must not leave an object")
				return
			}
			assert.True(t, bytes.Equal(data, readAll(t, b, "obj")), "stored content differs")
		})
	}
}

// firstAttemptOfUpload matches the first attempt of each upload request
// (retries carry "gccl-attempt-count/2" and higher in X-Goog-Api-Client).
func firstAttemptOfUpload() func(*http.Request) bool {
	return func(r *http.Request) bool {
		return gcs.IsUpload(r) && strings.Contains(r.Header.Get("X-Goog-Api-Client"), "gccl-attempt-count/1 ")
	}
}

// TestRetriesGiveUp checks that persistent failures end after MaxAttempts
// with an error that names the cause.
func TestRetriesGiveUp(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	bucket := newBucket(t, srv)
	ctx := context.Background()
	seed := newBackend(t, gcs.Options{Bucket: bucket, Endpoint: srv.URL()})
	require.NoError(t, seed.Put(ctx, "existing", strings.NewReader("x"), 1))

	ft := &gcs.FaultTransport{Base: http.DefaultTransport}
	b := newBackend(t, gcs.Options{
		Bucket: bucket, Endpoint: srv.URL(), HTTPClient: &http.Client{Transport: ft},
		Retry: gcs.RetryOptions{Initial: time.Millisecond, Max: time.Millisecond, MaxAttempts: 3},
	})
	ft.FailEvery = 1 // after New's bucket check

	ops := map[string]func() error{
		"put":    func() error { return b.Put(ctx, "new", strings.NewReader("data"), 4) },
		"stream": func() error { return b.Put(ctx, "new", bytes.NewReader(randomBytes(t, 1<<20)), -1) },
		"get":    func() error { _, err := b.Get(ctx, "existing"); return err },
		"stat":   func() error { _, err := b.Stat(ctx, "existing"); return err },
		"list":   func() error { _, err := b.List(ctx, ""); return err },
		"delete": func() error { return b.Delete(ctx, "existing") },
	}
	for name, op := range ops {
		before := ft.Requests()
		start := time.Now()
		err := op()
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), "503", name)
		want := int64(3)
		if name == "put" || name == "stream" {
			want++ // the failed Put checks once whether its object exists anyway
		}
		assert.Equal(t, want, ft.Requests()-before, "%s: attempts", name)
		assert.Less(t, time.Since(start), 5*time.Second, name)
	}
	_, err := seed.Stat(ctx, "new")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	assert.Equal(t, []byte("x"), readAll(t, seed, "existing"))
}

// rewriteTransport lets tests alter requests and responses.
type rewriteTransport struct {
	base http.RoundTripper
	req  func(*http.Request)
	resp func(*http.Response)
}

func (rt *rewriteTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if rt.req != nil {
		rt.req(r)
	}
	resp, err := rt.base.RoundTrip(r)
	if err == nil && rt.resp != nil {
		rt.resp(resp)
	}
	return resp, err
}

// corruptUploads replaces marker by a same-length string in upload bodies,
// as a bit flip in transit would.
func corruptUploads(marker []byte, count *atomic.Int64) func(*http.Request) {
	return func(r *http.Request) {
		if !gcs.IsUpload(r) || r.Body == nil || r.Body == http.NoBody {
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			panic(err)
		}
		_ = r.Body.Close()
		if i := bytes.Index(body, marker); i >= 0 {
			body[i] ^= 0x01
			count.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
		r.ContentLength = int64(len(body))
	}
}

// TestUploadCorruptionDetected flips a bit of the uploaded content in
// transit: the upload must fail and leave no object, for single-request and
// resumable uploads.
func TestUploadCorruptionDetected(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	marker := []byte("-=MARKER=-")
	for _, tc := range []struct {
		name string
		size int
	}{{"single-request", 100 << 10}, {"resumable", 600 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			var corrupted atomic.Int64
			b := newBackend(t, gcs.Options{
				Bucket: newBucket(t, srv), Endpoint: srv.URL(), ChunkSize: 256 << 10,
				HTTPClient: &http.Client{Transport: &rewriteTransport{base: http.DefaultTransport, req: corruptUploads(marker, &corrupted)}},
			})
			data := randomBytes(t, tc.size)
			copy(data[len(data)-1000:], marker)
			err := b.Put(context.Background(), "obj", bytes.NewReader(data), int64(len(data)))
			require.Error(t, err)
			t.Log(err)
			assert.Equal(t, int64(1), corrupted.Load())
			_, err = b.Stat(context.Background(), "obj")
			assert.ErrorIs(t, err, storage.ErrNotFound, "no corrupt object may remain")
		})
	}
}

// TestDownloadCorruptionDetected flips a bit of a downloaded object: reading
// it to the end must fail the CRC32C check.
func TestDownloadCorruptionDetected(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	var corrupted atomic.Int64
	rt := &rewriteTransport{base: http.DefaultTransport}
	b := newBackend(t, gcs.Options{Bucket: newBucket(t, srv), Endpoint: srv.URL(), HTTPClient: &http.Client{Transport: rt}})
	data := randomBytes(t, 50_000)
	require.NoError(t, b.Put(context.Background(), "obj", bytes.NewReader(data), int64(len(data))))
	rt.resp = func(resp *http.Response) {
		if resp.Request.URL.Query().Get("alt") != "media" {
			return
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			panic(err)
		}
		_ = resp.Body.Close()
		body[len(body)/2] ^= 0x80
		corrupted.Add(1)
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	rc, err := b.Get(context.Background(), "obj")
	require.NoError(t, err)
	defer rc.Close()
	_, err = io.ReadAll(rc)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "CRC")
	assert.Equal(t, int64(1), corrupted.Load())
}

// TestObjectAttributes checks what Put stores besides the content.
func TestObjectAttributes(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	bucket := newBucket(t, srv)
	b := newBackend(t, gcs.Options{Bucket: bucket, Prefix: "a/b/", Endpoint: srv.URL()})
	require.NoError(t, b.Put(context.Background(), "k/obj", strings.NewReader("<html>sniff me</html>"), -1))
	obj, err := srv.GetObject(bucket, "a/b/k/obj")
	require.NoError(t, err)
	assert.Equal(t, "application/octet-stream", obj.ContentType)
	assert.NotEmpty(t, obj.Crc32c)
	assert.Len(t, obj.Metadata["strata-upload-token"], 32)
	assert.Equal(t, "gs://"+bucket+"/a/b", b.String())
	assert.Equal(t, "gs://"+bucket, newBackend(t, gcs.Options{Bucket: bucket, Endpoint: srv.URL()}).String())
}

// TestListSkipsForeignObjects checks that objects whose names are not valid
// keys (Cloud Console "folder/" placeholders) are not listed.
func TestListSkipsForeignObjects(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	bucket := newBucket(t, srv)
	for _, name := range []string{"p/dir/", "p/dir//x", "p/ok"} {
		srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: name}, Content: []byte("x")})
	}
	b := newBackend(t, gcs.Options{Bucket: bucket, Prefix: "p", Endpoint: srv.URL()})
	infos, err := b.List(context.Background(), "")
	require.NoError(t, err)
	require.Len(t, infos, 1)
	assert.Equal(t, "ok", infos[0].Key)
}

// TestListPaging lists more objects than fit in one page.
func TestListPaging(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	const n = 250
	srv := newServer(t)
	bucket := newBucket(t, srv)
	for i := range n {
		srv.CreateObject(fakestorage.Object{
			ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: fmt.Sprintf("p/o/%05d", n-i)},
			Content:     []byte("x"),
		})
	}
	var pages atomic.Int64
	rt := &rewriteTransport{base: http.DefaultTransport, req: func(r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/o") && r.Method == http.MethodGet {
			pages.Add(1)
		}
	}}
	b := newBackend(t, gcs.Options{Bucket: bucket, Prefix: "p", Endpoint: srv.URL(), HTTPClient: &http.Client{Transport: rt}})
	gcs.SetListPageSize(b, 100)
	infos, err := b.List(context.Background(), "o/")
	require.NoError(t, err)
	require.Len(t, infos, n)
	for i, info := range infos {
		require.Equal(t, fmt.Sprintf("o/%05d", i+1), info.Key)
	}
	assert.GreaterOrEqual(t, pages.Load(), int64(3), "List must follow page tokens")
}

func TestEndpointForms(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	bucket := newBucket(t, srv)
	hostPort := strings.TrimPrefix(srv.URL(), "http://")
	for _, ep := range []string{srv.URL(), srv.URL() + "/", hostPort, srv.URL() + "/storage/v1/", srv.URL() + "/storage/v1"} {
		b := newBackend(t, gcs.Options{Bucket: bucket, Endpoint: ep})
		key := fmt.Sprintf("k%d", bucketSeq.Add(1))
		require.NoError(t, b.Put(context.Background(), key, strings.NewReader("x"), 1), ep)
		assert.Equal(t, []byte("x"), readAll(t, b, key), ep)
	}
}

func TestEmulatorHostEnv(t *testing.T) {
	srv := newServer(t)
	bucket := newBucket(t, srv)
	t.Setenv("STORAGE_EMULATOR_HOST", srv.URL())
	b := newBackend(t, gcs.Options{Bucket: bucket, Prefix: "env"})
	require.NoError(t, b.Put(context.Background(), "k", strings.NewReader("x"), 1))
	_, err := srv.GetObject(bucket, "env/k")
	require.NoError(t, err)

	t.Setenv("STORAGE_EMULATOR_HOST", hostOnly(srv.URL()))
	b = newBackend(t, gcs.Options{Bucket: bucket, Prefix: "env"})
	assert.Equal(t, []byte("x"), readAll(t, b, "k"))
}

func hostOnly(u string) string { return strings.TrimPrefix(u, "http://") }

func TestBucketDoesNotExist(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	_, err := gcs.New(context.Background(), gcs.Options{Bucket: "no-such-bucket", Endpoint: srv.URL(), Retry: fastRetry})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"no-such-bucket" does not exist`)
	assert.Contains(t, err.Error(), "storage.gcs.bucket")
}

// statusTransport answers matching requests with a fixed status.
func statusTransport(code int, match func(*http.Request) bool) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if !match(r) {
			return http.DefaultTransport.RoundTrip(r)
		}
		closeBody := r.Body != nil
		if closeBody {
			_ = r.Body.Close()
		}
		body := fmt.Sprintf(`{"error":{"code":%d,"message":"%s"}}`, code, http.StatusText(code))
		return &http.Response{
			StatusCode: code, Status: fmt.Sprintf("%d %s", code, http.StatusText(code)),
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:  http.Header{"Content-Type": {"application/json"}},
			Body:    io.NopCloser(strings.NewReader(body)),
			Request: r,
		}, nil
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestPermissionDenied(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	bucket := newBucket(t, srv)
	all := func(*http.Request) bool { return true }

	_, err := gcs.New(context.Background(), gcs.Options{
		Bucket: bucket, Endpoint: srv.URL(), Retry: fastRetry,
		HTTPClient: &http.Client{Transport: statusTransport(http.StatusForbidden, all)},
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "permission denied")
	assert.Contains(t, err.Error(), "credentials")
	assert.Contains(t, err.Error(), bucket)

	_, err = gcs.New(context.Background(), gcs.Options{
		Bucket: bucket, Endpoint: srv.URL(), Retry: fastRetry,
		HTTPClient: &http.Client{Transport: statusTransport(http.StatusUnauthorized, all)},
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "authentication failed")

	// Object-level roles cannot read bucket metadata, but may use the
	// bucket: New probes with a list instead.
	bucketGet := func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/b/"+bucket)
	}
	b := newBackend(t, gcs.Options{
		Bucket: bucket, Endpoint: srv.URL(),
		HTTPClient: &http.Client{Transport: statusTransport(http.StatusForbidden, bucketGet)},
	})
	require.NoError(t, b.Put(context.Background(), "k", strings.NewReader("x"), 1))

	// A 403 on an operation names the credentials.
	uploads := &http.Client{Transport: statusTransport(http.StatusForbidden, gcs.IsUpload)}
	b = newBackend(t, gcs.Options{Bucket: bucket, Endpoint: srv.URL(), HTTPClient: uploads})
	err = b.Put(context.Background(), "k2", strings.NewReader("x"), 1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "permission denied")
	assert.Contains(t, err.Error(), "roles/storage.objectAdmin")
	assert.False(t, errors.Is(err, storage.ErrExists))
}

func TestOptionErrors(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	ctx := context.Background()
	_, err := gcs.New(ctx, gcs.Options{})
	assert.ErrorContains(t, err, "storage.gcs.bucket")

	_, err = gcs.New(ctx, gcs.Options{Bucket: "b", Prefix: "a/../b", Endpoint: "http://127.0.0.1:1"})
	assert.ErrorIs(t, err, storage.ErrInvalidKey)
	assert.ErrorContains(t, err, "storage.gcs.prefix")

	_, err = gcs.New(ctx, gcs.Options{Bucket: "b", Endpoint: "http://"})
	assert.ErrorContains(t, err, "invalid emulator endpoint")

	dir := t.TempDir()
	_, err = gcs.New(ctx, gcs.Options{Bucket: "b", CredentialsFile: dir + "/missing.json"})
	assert.ErrorContains(t, err, "storage.gcs.credentials_file")
	assert.ErrorContains(t, err, "missing.json")

	bad := dir + "/bad.json"
	require.NoError(t, os.WriteFile(bad, []byte("not json"), 0o600))
	_, err = gcs.New(ctx, gcs.Options{Bucket: "b", CredentialsFile: bad})
	assert.ErrorContains(t, err, "not a JSON credentials file")

	odd := dir + "/odd.json"
	require.NoError(t, os.WriteFile(odd, []byte(`{"type":"gdc_service_account"}`), 0o600))
	_, err = gcs.New(ctx, gcs.Options{Bucket: "b", CredentialsFile: odd})
	assert.ErrorContains(t, err, `credentials type "gdc_service_account"`)
}

func TestInvalidObjectNames(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(t)
	b := newBackend(t, gcs.Options{Bucket: newBucket(t, srv), Prefix: "p", Endpoint: srv.URL()})
	ctx := context.Background()
	for _, k := range []string{"a\nb", "a\rb", "bad\xffutf8", strings.Repeat("x", 1023)} {
		err := b.Put(ctx, k, strings.NewReader("x"), 1)
		assert.ErrorIs(t, err, storage.ErrInvalidKey, "%q", k)
		_, err = b.Stat(ctx, k)
		assert.ErrorIs(t, err, storage.ErrInvalidKey, "%q", k)
	}
	// 1022 bytes + "p/" is exactly GCS's limit.
	require.NoError(t, b.Put(ctx, strings.Repeat("x", 1022), strings.NewReader("x"), 1))
}

// BenchmarkGCSPut uploads 8 MiB objects to an in-process fake-gcs-server.
func BenchmarkGCSPut(b *testing.B) {
	b.Setenv("STORAGE_EMULATOR_HOST", "")
	srv := newServer(b)
	be := newBackend(b, gcs.Options{Bucket: newBucket(b, srv), Endpoint: srv.URL()})
	data := randomBytes(b, 8<<20)
	ctx := context.Background()
	b.SetBytes(int64(len(data)))
	for i := 0; b.Loop(); i++ {
		key := fmt.Sprintf("bench/%d", i)
		if err := be.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := be.Delete(ctx, key); err != nil { // keep the fake's memory bounded
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// TestBackendOpen opens a GCS repository from the configuration, as the
// commands do, with the emulator named by $STORAGE_EMULATOR_HOST.
func TestBackendOpen(t *testing.T) {
	srv := newServer(t)
	bucket := newBucket(t, srv)
	t.Setenv("STORAGE_EMULATOR_HOST", srv.URL())
	ctx := context.Background()
	b, err := backend.Open(ctx, config.Storage{Type: "gcs", GCS: config.GCSStorage{Bucket: bucket, Prefix: "repo"}})
	require.NoError(t, err)
	assert.Equal(t, "gs://"+bucket+"/repo", b.String())
	require.NoError(t, b.Put(ctx, "k", strings.NewReader("x"), 1))
	_, err = srv.GetObject(bucket, "repo/k")
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = backend.Open(ctx, config.Storage{Type: "gcs", GCS: config.GCSStorage{Bucket: "missing-bucket"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `bucket "missing-bucket" does not exist`)
	assert.Contains(t, err.Error(), "storage.gcs.bucket")
}
