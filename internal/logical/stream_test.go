package logical_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/logical"
)

func memRange(stream []byte) func(ctx context.Context, off, size int64) (io.ReadCloser, error) {
	return func(ctx context.Context, off, size int64) (io.ReadCloser, error) {
		end := off + size
		if end > int64(len(stream)) {
			end = int64(len(stream))
		}
		return io.NopCloser(bytes.NewReader(stream[off:end])), nil
	}
}

// Files put from many goroutines come back whole from the stream, each at
// the offset recorded in its File; a file whose bytes changed, or that is
// shorter or longer than recorded, fails as ErrCorrupt at its end.
func TestStreamSinkAndSourceRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	sink := &logical.StreamSink{W: &buf}
	files := make([]*logical.File, 40)
	want := map[string][]byte{}
	var wg sync.WaitGroup
	for i := range files {
		files[i] = &logical.File{Name: fmt.Sprintf("s/t.%05d.sql", i), Kind: logical.KindData}
		data := bytes.Repeat([]byte{byte(i)}, 1000+i*37)
		want[files[i].Name] = data
		wg.Add(1)
		go func() {
			defer wg.Done()
			require.NoError(t, sink.Put(context.Background(), files[i], data))
		}()
	}
	wg.Wait()
	require.Equal(t, int64(buf.Len()), sink.Size())
	src := logical.StreamSource{OpenRange: memRange(buf.Bytes())}
	for _, f := range files {
		r, err := src.Open(context.Background(), f)
		require.NoError(t, err)
		got, err := io.ReadAll(r)
		require.NoError(t, err)
		require.Equal(t, want[f.Name], got)
	}

	stream := append([]byte(nil), buf.Bytes()...)
	f := *files[3]
	stream[f.Offset+10] ^= 1
	_, err := io.ReadAll(logical.CheckedReader(io.NopCloser(bytes.NewReader(stream[f.Offset:f.Offset+f.Size])), &f))
	require.ErrorIs(t, err, logical.ErrCorrupt)
	require.ErrorContains(t, err, "sha256")

	short := f
	short.Size++
	_, err = io.ReadAll(logical.CheckedReader(io.NopCloser(bytes.NewReader(buf.Bytes()[f.Offset:f.Offset+f.Size])), &short))
	require.ErrorIs(t, err, logical.ErrCorrupt)
	long := f
	long.Size--
	_, err = io.ReadAll(logical.CheckedReader(io.NopCloser(bytes.NewReader(buf.Bytes()[f.Offset:f.Offset+f.Size])), &long))
	require.ErrorIs(t, err, logical.ErrCorrupt)
}

// A sink whose writer fails refuses every later file: a dump never has a
// hole in its stream.
func TestStreamSinkStopsAtTheFirstWriteError(t *testing.T) {
	sink := &logical.StreamSink{W: failAfter{n: 1}}
	require.NoError(t, sink.Put(context.Background(), &logical.File{Name: "a"}, []byte("x")))
	require.Error(t, sink.Put(context.Background(), &logical.File{Name: "b"}, []byte("yy")))
	require.Error(t, sink.Put(context.Background(), &logical.File{Name: "c"}, []byte("z")))
}

type failAfter struct{ n int }

func (f failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, io.ErrShortWrite
	}
	return len(p), nil
}
