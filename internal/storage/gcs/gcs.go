// Package gcs implements storage.Backend on Google Cloud Storage with the
// cloud.google.com/go/storage client (JSON API over HTTP).
//
// A key maps to the object "prefix/key" of the configured bucket (or to
// "key" without a prefix).
//
// Writes never overwrite: Put uploads with the precondition
// ifGenerationMatch=0 (storage.Conditions{DoesNotExist: true}), so that of
// concurrent writers of one key exactly one wins and the others get
// storage.ErrExists, and so that retrying an upload can never replace an
// object. An object is uploaded in a single request when its size is known
// and at most the chunk size (8 MiB by default), or when a stream of unknown
// size ends within the first chunk; otherwise as a resumable upload in
// chunks. Either way the client library computes the CRC32C of the content
// while streaming and sends it with the upload (in the object metadata of a
// single request, in the X-Goog-Hash header of the last chunk), and GCS
// rejects the upload if the data it received differs. Put also compares the
// size and CRC32C that GCS reports for the new object with its own, and
// removes the object and fails if they differ. An upload is only committed
// when the whole input has been read and has the announced size: a reader
// error, a size mismatch or a cancelled context abort it (the writer's
// context is cancelled before the last request is sent) and no object
// appears.
//
// Every request is retried with exponential backoff (see RetryOptions) on
// HTTP 408, 429 and 5xx responses, connection errors and timeouts. The retry
// policy is "always", which is safe because reads, lists and deletes are
// idempotent and writes carry the DoesNotExist precondition. One case needs
// care: when the response to a successful upload is lost, the retried upload
// fails with HTTP 412 (precondition failed) because the object now exists.
// Every Put therefore stores a random upload token in the object's custom
// metadata (x-goog-meta-strata-upload-token); on a 412, Put reads the
// existing object's metadata and reports success if it carries this Put's
// token and has the same size and CRC32C as the data sent — it is then the
// object this very Put wrote. Otherwise (another writer won) Put fails with
// storage.ErrExists. Comparing the token, not only the size and checksum,
// keeps "exactly one winner" true even when two writers store identical
// content.
//
// Credentials are Application Default Credentials unless
// Options.CredentialsFile names a JSON credentials file. With an emulator
// (Options.Endpoint or $STORAGE_EMULATOR_HOST) requests are unauthenticated.
package gcs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	gcs "cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/strata-backup/strata/internal/storage"
)

// DefaultChunkSize is the default upload chunk size: objects up to this size
// are uploaded in a single request, larger ones as resumable uploads in
// chunks of this size. Each Put in progress buffers up to one chunk.
const DefaultChunkSize = 8 << 20

// Defaults of RetryOptions.
const (
	DefaultRetryInitial     = time.Second
	DefaultRetryMax         = 32 * time.Second
	DefaultRetryMultiplier  = 2.0
	DefaultRetryMaxAttempts = 10
)

const (
	// contentType is the Content-Type of every object: the repository
	// format is opaque binary data, and setting it avoids content sniffing.
	contentType = "application/octet-stream"
	// uploadTokenKey is the custom metadata key holding the random token of
	// the Put that wrote the object (see the package documentation).
	uploadTokenKey = "strata-upload-token"
	// maxObjectName is GCS's limit on object names, in bytes of UTF-8.
	maxObjectName = 1024
	// copyBufSize is the size of Put's read buffer.
	copyBufSize = 256 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// RetryOptions configures the retries of failed requests. Zero fields take
// the defaults (DefaultRetryInitial etc.).
type RetryOptions struct {
	// Initial is the upper bound of the first pause between attempts.
	Initial time.Duration
	// Max is the upper bound of any pause between attempts.
	Max time.Duration
	// Multiplier is the factor by which the pause bound grows after each
	// failed attempt. Pauses are chosen at random up to the bound (full
	// jitter).
	Multiplier float64
	// MaxAttempts is the number of attempts, including the first, of one
	// request before giving up. For uploads it counts the attempts of each
	// chunk (of the whole request for single-request uploads); the time
	// spent on one chunk is also limited to MaxAttempts*Max plus one minute.
	MaxAttempts int
}

func (r RetryOptions) withDefaults() RetryOptions {
	if r.Initial <= 0 {
		r.Initial = DefaultRetryInitial
	}
	if r.Max <= 0 {
		r.Max = DefaultRetryMax
	}
	if r.Max < r.Initial {
		r.Max = r.Initial
	}
	if r.Multiplier < 1 {
		r.Multiplier = DefaultRetryMultiplier
	}
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = DefaultRetryMaxAttempts
	}
	return r
}

// Options configures a GCS backend.
type Options struct {
	// Bucket is the bucket name (storage.gcs.bucket). Required.
	Bucket string
	// Prefix is an optional object name prefix under which the repository
	// lives (storage.gcs.prefix); leading and trailing slashes are ignored.
	Prefix string
	// CredentialsFile is an optional JSON credentials file
	// (storage.gcs.credentials_file): a service account key, authorized
	// user, impersonated service account or external account (workload
	// identity federation) configuration. Empty means Application Default
	// Credentials. It is ignored when an emulator is used.
	CredentialsFile string
	// Endpoint is the URL of a GCS emulator such as fake-gcs-server
	// ("http://127.0.0.1:4443"; the "/storage/v1/" path is added when the
	// URL has none). Requests to it are not authenticated. Empty means the
	// real service, or the emulator named by $STORAGE_EMULATOR_HOST if set.
	Endpoint string
	// HTTPClient is an optional HTTP client for all requests, for tests and
	// fault injection (see FaultTransport). It is used as is: against the
	// real service it must add authentication itself.
	HTTPClient *http.Client
	// Retry configures retries of failed requests.
	Retry RetryOptions
	// OnRetry, if set, is called before each retry of a failed request
	// with the operation retried: get, put, stat, list or delete (the
	// strata_storage_retries_total counter).
	OnRetry func(op string)
	// ChunkSize is the upload chunk size; zero means DefaultChunkSize. GCS
	// rounds it up to a multiple of 256 KiB.
	ChunkSize int
}

// Backend stores objects in a GCS bucket. It is safe for concurrent use.
type Backend struct {
	client     *gcs.Client
	bucket     *gcs.BucketHandle
	bucketName string
	prefix     string // "" or ends with "/"
	retry      RetryOptions
	chunkSize  int
	pageSize   int    // objects per List request
	credsDesc  string // which credentials are used, for error messages
	onRetry    func(op string)
}

var _ storage.Backend = (*Backend)(nil)

// New connects to GCS and returns a backend for the bucket named in o. It
// checks that the bucket exists and is accessible, and fails with an error
// naming the storage.gcs.* setting to fix otherwise.
func New(ctx context.Context, o Options) (*Backend, error) {
	if o.Bucket == "" {
		return nil, errors.New("gcs: bucket name is empty: set storage.gcs.bucket")
	}
	prefix := strings.Trim(o.Prefix, "/")
	if prefix != "" {
		if err := storage.ValidateKey(prefix); err != nil {
			return nil, fmt.Errorf("gcs: storage.gcs.prefix %q: %w", o.Prefix, err)
		}
		if err := checkObjectName(prefix); err != nil {
			return nil, fmt.Errorf("gcs: storage.gcs.prefix %q: %w", o.Prefix, err)
		}
		prefix += "/"
	}
	opts, credsDesc, err := clientOptions(o)
	if err != nil {
		return nil, err
	}
	client, err := gcs.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("gcs: create client for bucket %q (credentials: %s): %w", o.Bucket, credsDesc, err)
	}
	r := o.Retry.withDefaults()
	client.SetRetry(
		gcs.WithBackoff(gax.Backoff{Initial: r.Initial, Max: r.Max, Multiplier: r.Multiplier}),
		gcs.WithPolicy(gcs.RetryAlways),
		gcs.WithMaxAttempts(r.MaxAttempts),
		gcs.WithErrorFunc(shouldRetry),
	)
	chunk := o.ChunkSize
	if chunk <= 0 {
		chunk = DefaultChunkSize
	}
	b := &Backend{
		client:     client,
		bucket:     client.Bucket(o.Bucket),
		bucketName: o.Bucket,
		prefix:     prefix,
		retry:      r,
		chunkSize:  chunk,
		pageSize:   listPageSize,
		credsDesc:  credsDesc,
		onRetry:    o.OnRetry,
	}
	if err := b.checkBucket(ctx); err != nil {
		_ = client.Close()
		return nil, err
	}
	return b, nil
}

// clientOptions returns the client options for o and a description of the
// credentials used.
func clientOptions(o Options) ([]option.ClientOption, string, error) {
	opts := []option.ClientOption{
		// JSON reads are consistent with all other operations (which use
		// the JSON API) and work with emulators that lack the XML API
		// routes for arbitrary hosts.
		gcs.WithJSONReads(),
		gcs.WithDisabledClientMetrics(),
	}
	var desc string
	switch {
	case o.Endpoint != "":
		ep, err := emulatorEndpoint(o.Endpoint)
		if err != nil {
			return nil, "", err
		}
		opts = append(opts, option.WithEndpoint(ep), option.WithoutAuthentication())
		desc = "none (emulator at " + ep + ")"
	case os.Getenv("STORAGE_EMULATOR_HOST") != "":
		// The client library points itself at the emulator.
		opts = append(opts, option.WithoutAuthentication())
		desc = "none (emulator at $STORAGE_EMULATOR_HOST=" + os.Getenv("STORAGE_EMULATOR_HOST") + ")"
	case o.CredentialsFile != "":
		opt, err := credentialsFileOption(o.CredentialsFile)
		if err != nil {
			return nil, "", err
		}
		opts = append(opts, opt)
		desc = "storage.gcs.credentials_file " + o.CredentialsFile
	default:
		desc = "application default credentials ($GOOGLE_APPLICATION_CREDENTIALS, " +
			"`gcloud auth application-default login`, or the attached service account); " +
			"set storage.gcs.credentials_file to use a key file"
	}
	if o.HTTPClient != nil {
		opts = append(opts, option.WithHTTPClient(o.HTTPClient))
		if o.Endpoint == "" && os.Getenv("STORAGE_EMULATOR_HOST") == "" {
			desc = "those of the custom HTTP client"
		}
	}
	return opts, desc, nil
}

// emulatorEndpoint turns an emulator address into the JSON API base URL.
func emulatorEndpoint(ep string) (string, error) {
	raw := ep
	if !strings.Contains(ep, "://") {
		ep = "http://" + ep
	}
	u, err := url.Parse(ep)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("gcs: invalid emulator endpoint %q (want a URL such as http://127.0.0.1:4443)", raw)
	}
	switch {
	case u.Path == "" || u.Path == "/":
		u.Path = "/storage/v1/"
	case !strings.HasSuffix(u.Path, "/"):
		u.Path += "/"
	}
	return u.String(), nil
}

// credentialsFileOption loads the credentials file after checking its type:
// only the usual credential types are accepted.
func credentialsFileOption(file string) (option.ClientOption, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("gcs: read storage.gcs.credentials_file: %w", err)
	}
	var f struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("gcs: storage.gcs.credentials_file %s is not a JSON credentials file: %w", file, err)
	}
	switch t := option.CredentialsType(f.Type); t {
	case option.ServiceAccount, option.AuthorizedUser, option.ImpersonatedServiceAccount, option.ExternalAccount:
		return option.WithAuthCredentialsFile(t, file), nil
	}
	return nil, fmt.Errorf("gcs: storage.gcs.credentials_file %s has credentials type %q; want service_account, "+
		"authorized_user, impersonated_service_account or external_account", file, f.Type)
}

// shouldRetry reports whether a failed request may be retried: the client
// library's transient errors (408, 429, 5xx, connection errors) and
// timeouts.
func shouldRetry(err error) bool {
	if err == nil {
		return false
	}
	if gcs.ShouldRetry(err) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// retried reports a retry of op to the OnRetry hook.
func (b *Backend) retried(op string) {
	if b.onRetry != nil {
		b.onRetry(op)
	}
}

// object returns the handle of an object whose requests for op report
// their retries (the client's retry policy otherwise).
func (b *Backend) object(op, name string) *gcs.ObjectHandle {
	return b.bucket.Object(name).Retryer(gcs.WithErrorFunc(b.retryFunc(op)))
}

// retryFunc is shouldRetry, reporting the retries of op.
func (b *Backend) retryFunc(op string) func(error) bool {
	return func(err error) bool {
		if !shouldRetry(err) {
			return false
		}
		b.retried(op)
		return true
	}
}

// checkBucket verifies that the bucket exists and that the credentials can
// use it.
func (b *Backend) checkBucket(ctx context.Context) error {
	_, err := b.bucket.Attrs(ctx)
	if err == nil {
		return nil
	}
	if errors.Is(err, gcs.ErrBucketNotExist) {
		return b.bucketMissing(err)
	}
	if code := httpCode(err); code == http.StatusForbidden {
		// Reading bucket metadata needs storage.buckets.get, which
		// object-level roles (roles/storage.objectAdmin) lack. Listing
		// objects is what the backend needs, so probe that instead.
		it := b.bucket.Objects(ctx, &gcs.Query{Prefix: b.prefix})
		it.PageInfo().MaxSize = 1
		_, lerr := it.Next()
		if lerr == nil || errors.Is(lerr, iterator.Done) {
			return nil
		}
		if errors.Is(lerr, gcs.ErrBucketNotExist) || httpCode(lerr) == http.StatusNotFound {
			return b.bucketMissing(lerr)
		}
		err = lerr
	}
	switch httpCode(err) {
	case http.StatusUnauthorized, http.StatusForbidden:
		return b.fail("open", "", err)
	}
	// Missing application default credentials and network errors end
	// here: name the credentials and the endpoint in use.
	return fmt.Errorf("gcs: open %s (credentials: %s): %w", b.location(""), b.credsDesc, err)
}

func (b *Backend) bucketMissing(err error) error {
	return fmt.Errorf("gcs: bucket %q does not exist: create it (gcloud storage buckets create gs://%s) "+
		"or fix storage.gcs.bucket: %w", b.bucketName, b.bucketName, err)
}

// Client returns the underlying client library client.
func (b *Backend) Client() *gcs.Client { return b.client }

// Close releases the client's resources. The backend must not be used
// afterwards.
func (b *Backend) Close() error { return b.client.Close() }

// String describes the backend as gs://bucket/prefix.
func (b *Backend) String() string {
	if b.prefix == "" {
		return "gs://" + b.bucketName
	}
	return "gs://" + b.bucketName + "/" + strings.TrimSuffix(b.prefix, "/")
}

// objectName maps a key to its object name.
func (b *Backend) objectName(key string) string { return b.prefix + key }

// checkObjectName enforces GCS's object naming rules beyond ValidateKey.
func checkObjectName(name string) error {
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: %q is not valid UTF-8", storage.ErrInvalidKey, name)
	}
	if strings.ContainsAny(name, "\r\n") {
		return fmt.Errorf("%w: %q contains a carriage return or line feed", storage.ErrInvalidKey, name)
	}
	return nil
}

func (b *Backend) validateKey(key string) error {
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	if err := checkObjectName(key); err != nil {
		return err
	}
	if n := len(b.objectName(key)); n > maxObjectName {
		return fmt.Errorf("%w: object name for key %q is %d bytes long (GCS allows %d)",
			storage.ErrInvalidKey, key, n, maxObjectName)
	}
	return nil
}

// httpCode returns the HTTP status of a GCS error, or 0.
func httpCode(err error) int {
	var gerr *googleapi.Error
	if errors.As(err, &gerr) {
		return gerr.Code
	}
	return 0
}

// location names an object (or, for key "", the bucket) as a gs:// URL.
func (b *Backend) location(key string) string {
	if key == "" {
		return "gs://" + b.bucketName
	}
	return "gs://" + b.bucketName + "/" + b.objectName(key)
}

// fail wraps err for operation op on key ("" for the bucket) with hints for
// authentication and authorization errors.
func (b *Backend) fail(op, key string, err error) error {
	what := "gcs: " + op + " " + b.location(key)
	switch httpCode(err) {
	case http.StatusUnauthorized:
		return fmt.Errorf("%s: authentication failed (HTTP 401): check the credentials (%s): "+
			"they are missing, invalid or expired: %w", what, b.credsDesc, err)
	case http.StatusForbidden:
		return fmt.Errorf("%s: permission denied (HTTP 403): check that the credentials (%s) are granted "+
			"roles/storage.objectAdmin (or storage.objects.create/get/list/delete) on bucket %q: %w",
			what, b.credsDesc, b.bucketName, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// failCtx is fail, but reports a done context as the cause (errors.Is
// context.Canceled holds) even when the library returned another error.
func (b *Backend) failCtx(ctx context.Context, op, key string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("gcs: %s %s: %w (%v)", op, b.location(key), cerr, err)
	}
	return b.fail(op, key, err)
}

func newUploadToken() string {
	var t [16]byte
	_, _ = rand.Read(t[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(t[:])
}

// Put uploads r's content to key with the DoesNotExist precondition; see the
// package documentation. If size is non-negative, r must yield exactly size
// bytes. It fails with storage.ErrExists if the key is already present.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := b.validateKey(key); err != nil {
		return fmt.Errorf("gcs: put: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("gcs: put %s: %w", b.location(key), err)
	}
	name := b.objectName(key)

	// The writer gets its own context: cancelling it before Close aborts
	// the upload (the final request is never sent), so no object appears.
	wctx, abort := context.WithCancel(ctx)
	defer abort()

	// Failed attempts of the current chunk; reset when a chunk succeeds.
	var failures atomic.Int64
	obj := b.bucket.Object(name).
		If(gcs.Conditions{DoesNotExist: true}).
		Retryer(gcs.WithErrorFunc(func(err error) bool {
			if err == nil {
				return false
			}
			if failures.Add(1) >= int64(b.retry.MaxAttempts) {
				return false
			}
			if !shouldRetry(err) {
				return false
			}
			b.retried("put")
			return true
		}))
	token := newUploadToken()
	w := obj.NewWriter(wctx)
	w.ContentType = contentType
	w.Metadata = map[string]string{uploadTokenKey: token}
	w.ChunkSize = b.chunkSize
	if size >= 0 && size <= int64(b.chunkSize) {
		// One request: the chunk buffer must be larger than the object
		// for the library to see EOF within the first chunk.
		w.ChunkSize = int(size) + 1
	}
	w.ProgressFunc = func(int64) { failures.Store(0) }
	// The library's default (32 s) would end retries long before
	// MaxAttempts with the default backoff.
	w.ChunkRetryDeadline = time.Duration(b.retry.MaxAttempts)*b.retry.Max + time.Minute

	cancelWrite := func() {
		abort()
		_ = w.Close() // returns the cancellation error; nothing is committed
	}

	crc := crc32.New(castagnoli)
	var n int64
	buf := make([]byte, copyBufSize)
	for {
		if err := ctx.Err(); err != nil {
			cancelWrite()
			return fmt.Errorf("gcs: put %s: %w", b.location(key), err)
		}
		nr, rerr := r.Read(buf)
		if nr > 0 {
			n += int64(nr)
			if size >= 0 && n > size {
				cancelWrite()
				return fmt.Errorf("gcs: put %s: reader yields more than the expected %d bytes", b.location(key), size)
			}
			_, _ = crc.Write(buf[:nr])
			if _, werr := w.Write(buf[:nr]); werr != nil {
				cancelWrite()
				return b.failCtx(ctx, "put", key, werr)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			cancelWrite()
			return fmt.Errorf("gcs: put %s: read input: %w", b.location(key), rerr)
		}
	}
	if size >= 0 && n != size {
		cancelWrite()
		return fmt.Errorf("gcs: put %s: got %d bytes, expected %d", b.location(key), n, size)
	}
	if err := ctx.Err(); err != nil {
		cancelWrite()
		return fmt.Errorf("gcs: put %s: %w", b.location(key), err)
	}
	sum := crc.Sum32()

	if err := w.Close(); err != nil {
		// A failed upload may still have been committed by an attempt
		// whose response was lost: a retry then gets 412 (or, for the
		// last chunk of a resumable upload, possibly another error).
		// The object is ours if it carries our token.
		switch code := httpCode(err); {
		case code == http.StatusPreconditionFailed:
			if b.ownObject(ctx, b.object("stat", name), token, n, sum) {
				return nil
			}
			return fmt.Errorf("gcs: put %s: %w", b.location(key), storage.ErrExists)
		case code == http.StatusBadRequest || code == http.StatusUnauthorized || code == http.StatusForbidden:
			// Rejected outright: nothing was committed.
		case ctx.Err() == nil:
			// Retries are exhausted or the error is not retryable: one
			// look suffices.
			if b.ownObject(ctx, b.bucket.Object(name).Retryer(gcs.WithMaxAttempts(1)), token, n, sum) {
				return nil
			}
		}
		return b.failCtx(ctx, "put", key, err)
	}
	attrs := w.Attrs()
	if attrs != nil && (attrs.Size != n || attrs.CRC32C != sum) {
		// GCS verifies the CRC32C sent with the upload, so this should
		// not happen; never leave a corrupt object behind.
		derr := b.bucket.Object(name).If(gcs.Conditions{GenerationMatch: attrs.Generation}).Delete(context.WithoutCancel(ctx))
		return fmt.Errorf("gcs: put %s: stored object has size %d and CRC32C %08x, sent %d bytes with CRC32C %08x "+
			"(corrupted in transit; removing it: %v)", b.location(key), attrs.Size, attrs.CRC32C, n, sum, derr)
	}
	return nil
}

// ownObject reports whether obj exists and was written by the Put with the
// given token, size and CRC32C.
func (b *Backend) ownObject(ctx context.Context, obj *gcs.ObjectHandle, token string, size int64, sum uint32) bool {
	attrs, err := obj.Attrs(ctx)
	if err != nil {
		return false
	}
	return attrs.Metadata[uploadTokenKey] == token && attrs.Size == size && attrs.CRC32C == sum
}

// Get opens the object for reading. The client library verifies the
// CRC32C of the content when it is read to the end.
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := b.validateKey(key); err != nil {
		return nil, fmt.Errorf("gcs: get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gcs: get %s: %w", b.location(key), err)
	}
	rc, err := b.object("get", b.objectName(key)).NewReader(ctx)
	if err != nil {
		if errors.Is(err, gcs.ErrObjectNotExist) {
			return nil, fmt.Errorf("gcs: get %s: %w", b.location(key), storage.ErrNotFound)
		}
		return nil, b.failCtx(ctx, "get", key, err)
	}
	return rc, nil
}

// Stat returns the object's size and modification (creation) time.
func (b *Backend) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if err := b.validateKey(key); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("gcs: stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("gcs: stat %s: %w", b.location(key), err)
	}
	attrs, err := b.object("stat", b.objectName(key)).Attrs(ctx)
	if err != nil {
		if errors.Is(err, gcs.ErrObjectNotExist) {
			return storage.ObjectInfo{}, fmt.Errorf("gcs: stat %s: %w", b.location(key), storage.ErrNotFound)
		}
		return storage.ObjectInfo{}, b.failCtx(ctx, "stat", key, err)
	}
	return storage.ObjectInfo{Key: key, Size: attrs.Size, ModTime: modTime(attrs)}, nil
}

func modTime(a *gcs.ObjectAttrs) time.Time {
	if !a.Updated.IsZero() {
		return a.Updated
	}
	return a.Created
}

// listPageSize is the number of objects requested per List page (the
// maximum GCS returns).
const listPageSize = 1000

// List returns the objects whose key starts with prefix, sorted by key.
// Objects below the backend prefix whose names are not valid keys (such as
// "folder/" placeholders created by the Cloud Console) are skipped.
func (b *Backend) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("gcs: list: %w", err)
	}
	if err := checkObjectName(prefix); err != nil {
		return nil, fmt.Errorf("gcs: list: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gcs: list %s: %w", b.location(prefix+"*"), err)
	}
	q := &gcs.Query{Prefix: b.prefix + prefix}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Updated", "Created"}); err != nil {
		return nil, fmt.Errorf("gcs: list %s: %w", b.location(prefix+"*"), err)
	}
	it := b.bucket.Retryer(gcs.WithErrorFunc(b.retryFunc("list"))).Objects(ctx, q)
	it.PageInfo().MaxSize = b.pageSize
	out := make([]storage.ObjectInfo, 0)
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, b.failCtx(ctx, "list", prefix+"*", err)
		}
		key, ok := strings.CutPrefix(attrs.Name, b.prefix)
		if !ok || storage.ValidateKey(key) != nil {
			continue
		}
		out = append(out, storage.ObjectInfo{Key: key, Size: attrs.Size, ModTime: modTime(attrs)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes the object; deleting a missing key is not an error.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := b.validateKey(key); err != nil {
		return fmt.Errorf("gcs: delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("gcs: delete %s: %w", b.location(key), err)
	}
	err := b.object("delete", b.objectName(key)).Delete(ctx)
	if err != nil && !errors.Is(err, gcs.ErrObjectNotExist) {
		return b.failCtx(ctx, "delete", key, err)
	}
	return nil
}

// ListDir lists one level under prefix (storage.DirLister) with the
// bucket's delimiter "/": a request per 1,000 objects or directories, not
// per 1,000 keys below them.
func (b *Backend) ListDir(ctx context.Context, prefix string) ([]storage.ObjectInfo, []string, error) {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return nil, nil, fmt.Errorf("gcs: list: %w", err)
	}
	if err := checkObjectName(prefix); err != nil {
		return nil, nil, fmt.Errorf("gcs: list: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("gcs: list %s: %w", b.location(prefix+"*"), err)
	}
	q := &gcs.Query{Prefix: b.prefix + prefix, Delimiter: "/"}
	if err := q.SetAttrSelection([]string{"Name", "Size", "Updated", "Created"}); err != nil {
		return nil, nil, fmt.Errorf("gcs: list %s: %w", b.location(prefix+"*"), err)
	}
	it := b.bucket.Retryer(gcs.WithErrorFunc(b.retryFunc("list"))).Objects(ctx, q)
	it.PageInfo().MaxSize = b.pageSize
	objs, dirs := make([]storage.ObjectInfo, 0), make([]string, 0)
	for {
		attrs, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, nil, b.failCtx(ctx, "list", prefix+"*", err)
		}
		if attrs.Prefix != "" {
			if d, ok := strings.CutPrefix(attrs.Prefix, b.prefix); ok && storage.ValidatePrefix(d) == nil {
				dirs = append(dirs, d)
			}
			continue
		}
		key, ok := strings.CutPrefix(attrs.Name, b.prefix)
		if !ok || storage.ValidateKey(key) != nil {
			continue
		}
		objs = append(objs, storage.ObjectInfo{Key: key, Size: attrs.Size, ModTime: modTime(attrs)})
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	sort.Strings(dirs)
	return objs, dirs, nil
}
