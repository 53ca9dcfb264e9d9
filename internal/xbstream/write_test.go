package xbstream_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/xbstream"
	"github.com/strata-backup/strata/internal/xbstream/xbstreamtest"
)

// files is a set of members: an empty file, one smaller than a chunk, one
// of several chunks and a partial last chunk, in subdirectories.
func testFiles(t *testing.T) map[string][]byte {
	big := make([]byte, 2*xbstream.ChunkSize+12345)
	_, err := rand.Read(big)
	require.NoError(t, err)
	return map[string][]byte{
		"empty":               nil,
		"ibdata1":             []byte("small file"),
		"db1/t1.ibd":          big,
		"#innodb_redo/#ib_r0": bytes.Repeat([]byte{7}, 4096),
	}
}

func writeStream(t *testing.T, files map[string][]byte) []byte {
	var b bytes.Buffer
	w := xbstream.NewWriter(&b)
	for _, name := range []string{"empty", "ibdata1", "db1/t1.ibd", "#innodb_redo/#ib_r0"} {
		n, err := w.WriteFile(name, bytes.NewReader(files[name]))
		require.NoError(t, err)
		require.Equal(t, int64(len(files[name])), n)
	}
	require.Equal(t, int64(b.Len()), w.Written())
	return b.Bytes()
}

func checkTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err, name)
		require.True(t, bytes.Equal(want, got), "%s: %d bytes extracted, want %d", name, len(got), len(want))
	}
}

func TestWriterExtractRoundTripPassesTheChecker(t *testing.T) {
	files := testFiles(t)
	stream := writeStream(t, files)

	c := xbstream.NewChecker(nopCloser{&bytes.Buffer{}})
	_, err := c.Write(stream)
	require.NoError(t, err)
	require.NoError(t, c.Close())
	assert.Equal(t, len(files), c.Members())

	dir := t.TempDir()
	st, err := xbstream.Extract(bytes.NewReader(stream), dir)
	require.NoError(t, err)
	assert.Equal(t, len(files), st.Files)
	checkTree(t, dir, files)
}

// The stream Writer produces is one the tools' own extractor reads,
// checksums included.
func TestWriterStreamExtractsWithMbstream(t *testing.T) {
	mb, err := exec.LookPath("mbstream")
	if err != nil {
		t.Skip("mbstream is not installed")
	}
	files := testFiles(t)
	stream := writeStream(t, files)
	dir := t.TempDir()
	cmd := exec.Command(mb, "-x", "-C", dir)
	cmd.Stdin = bytes.NewReader(stream)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	checkTree(t, dir, files)

	// A flipped payload byte fails mbstream's checksum, and ours.
	bad := append([]byte(nil), stream...)
	i := bytes.Index(bad, []byte("small file"))
	bad[i] ^= 1
	cmd = exec.Command(mb, "-x", "-C", t.TempDir())
	cmd.Stdin = bytes.NewReader(bad)
	require.Error(t, cmd.Run(), "mbstream checks the CRC we write")
	_, err = xbstream.Extract(bytes.NewReader(bad), t.TempDir())
	require.ErrorIs(t, err, xbstream.ErrCorrupt)
	assert.Contains(t, err.Error(), "checksum")
}

func TestExtractRefusesHostileAndBrokenStreams(t *testing.T) {
	for _, c := range []struct {
		name   string
		stream []byte
		want   string
	}{
		{"parent", xbstreamtest.File("../escape", []byte("x")), `".." element`},
		{"absolute", xbstreamtest.File("/etc/passwd", []byte("x")), "absolute path"},
		{"deep parent", xbstreamtest.File("a/../../b", []byte("x")), `".." element`},
		{"not magic", []byte("XBSTCK02........"), "magic"},
		{"truncated header", xbstreamtest.File("a", []byte("xyz"))[:20], "ends inside the chunk"},
		{"truncated payload", xbstreamtest.Chunk('P', "a", []byte("xyz"))[:36], "ends inside the chunk"},
		{"no end chunk", xbstreamtest.Chunk('P', "a", nil), "ends before the end of member"},
		{"sparse", xbstreamtest.Chunk('S', "a", nil), "sparse"},
		{"unknown type", xbstreamtest.Chunk('Z', "a", nil), "unknown type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := xbstream.Extract(bytes.NewReader(c.stream), filepath.Join(dir, "x"))
			require.Error(t, err)
			assert.True(t, errors.Is(err, xbstream.ErrCorrupt), "%v", err)
			assert.Contains(t, err.Error(), c.want)
			_, serr := os.Stat(filepath.Join(dir, "escape"))
			assert.True(t, os.IsNotExist(serr), "nothing is written outside the extraction dir")
		})
	}
	// xbstreamtest leaves the checksum 0: a zero-length payload's CRC is 0.
	_, err := xbstream.Extract(bytes.NewReader(xbstreamtest.File("a", nil)), t.TempDir())
	require.NoError(t, err)
}

func TestWriterRefusesNamesTheReaderRefuses(t *testing.T) {
	w := xbstream.NewWriter(&bytes.Buffer{})
	for _, name := range []string{"", "/abs", "../x", "a\\b", string(bytes.Repeat([]byte{'a'}, 600))} {
		_, err := w.WriteFile(name, bytes.NewReader(nil))
		assert.Error(t, err, "%q", name)
	}
}
