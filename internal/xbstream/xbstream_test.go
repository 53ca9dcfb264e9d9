package xbstream_test

import (
	"bytes"
	"encoding/binary"
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

// sparse encodes an xtrabackup 8 sparse chunk with a map of n entries.
func sparse(path string, n int, payload []byte) []byte {
	var b bytes.Buffer
	b.WriteString("XBSTCK01")
	b.WriteByte(0)
	b.WriteByte('S')
	_ = binary.Write(&b, binary.LittleEndian, uint32(len(path)))
	b.WriteString(path)
	_ = binary.Write(&b, binary.LittleEndian, uint32(n))
	_ = binary.Write(&b, binary.LittleEndian, uint64(len(payload)))
	_ = binary.Write(&b, binary.LittleEndian, uint64(0))
	_ = binary.Write(&b, binary.LittleEndian, uint32(0))
	b.Write(bytes.Repeat([]byte{0x5a}, 8*n)) // a checker that did not skip the map would read it as a header
	b.Write(payload)
	return b.Bytes()
}

// feed writes stream to a Checker in pieces of n bytes and returns what it
// forwarded and the first error (of Write or Close).
func feed(stream []byte, n int) ([]byte, error) {
	var out bytes.Buffer
	c := xbstream.NewChecker(&out)
	for len(stream) > 0 {
		k := min(n, len(stream))
		if _, err := c.Write(stream[:k]); err != nil {
			return out.Bytes(), err
		}
		stream = stream[k:]
	}
	return out.Bytes(), c.Close()
}

func TestCheckerPassesAWellFormedStream(t *testing.T) {
	stream := append(append(xbstreamtest.File("ibdata1", bytes.Repeat([]byte{1}, 5000)), xbstreamtest.File("db1/t1.ibd", []byte("rows"))...),
		xbstreamtest.File("./xtrabackup_checkpoints", []byte("backup_type = full-backuped\n"))...)
	stream = append(stream, sparse("db1/sparse.ibd", 2, []byte("holes"))...)
	stream = append(stream, xbstreamtest.Chunk('E', "db1/sparse.ibd", nil)...)
	for _, n := range []int{1, 3, 13, 14, 15, 4096, len(stream)} {
		got, err := feed(stream, n)
		require.NoError(t, err, "pieces of %d", n)
		assert.True(t, bytes.Equal(stream, got), "pieces of %d: forwarded unchanged", n)
	}
}

// A hostile member name is refused with an error naming it, and nothing of
// its chunk reaches the extractor.
func TestCheckerRefusesUnsafeNames(t *testing.T) {
	good := xbstreamtest.File("ibdata1", []byte("data"))
	for _, name := range []string{"../ESCAPED", "/srv/ESCAPED", "db1/../../ESCAPED", "a\x00b", "..", "", `..\x`} {
		stream := append(append([]byte(nil), good...), xbstreamtest.File(name, []byte("evil"))...)
		for _, n := range []int{1, 7, len(stream)} {
			got, err := feed(stream, n)
			require.ErrorIs(t, err, xbstream.ErrCorrupt, "%q", name)
			var me *xbstream.MemberError
			require.True(t, errors.As(err, &me), "%q: %v", name, err)
			assert.Equal(t, name, me.Name)
			assert.Contains(t, err.Error(), "member")
			assert.Equal(t, good, got, "%q (pieces of %d): only the chunks before it were forwarded", name, n)
		}
	}
}

func TestCheckerRefusesMalformedStreams(t *testing.T) {
	good := xbstreamtest.File("ibdata1", []byte("data"))
	for name, stream := range map[string][]byte{
		"bad magic":     append([]byte("XBSTCK02"), good[8:]...),
		"truncated":     good[:len(good)-3],
		"truncated hdr": good[:10],
		"long path":     xbstreamtest.Chunk('P', string(bytes.Repeat([]byte("a"), 600)), nil),
		"unknown type":  xbstreamtest.Chunk('Z', "x", nil),
		"huge payload":  append(xbstreamtest.Chunk('P', "x", nil)[:14+1], bytes.Repeat([]byte{0xff}, 20)...),
	} {
		_, err := feed(stream, 5)
		assert.ErrorIs(t, err, xbstream.ErrCorrupt, name)
	}
}

// With the real extractor: a stream made by mbstream -c passes through the
// checker and extracts; a hostile one is stopped before mbstream -x sees
// the member, so nothing lands outside the directory.
func TestCheckerWithMbstream(t *testing.T) {
	mb, err := exec.LookPath("mbstream")
	if err != nil {
		t.Skip("mbstream not installed")
	}
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "db1"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "ibdata1"), bytes.Repeat([]byte("x"), 100000), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "db1", "t.ibd"), []byte("rows"), 0o644))
	create := exec.Command(mb, "-c", "ibdata1", "db1/t.ibd")
	create.Dir = src
	stream, err := create.Output()
	require.NoError(t, err)

	extract := func(stream []byte) (string, error) {
		root := t.TempDir()
		dir := filepath.Join(root, "a", "b", "x")
		require.NoError(t, os.MkdirAll(dir, 0o700))
		cmd := exec.Command(mb, "-x", "-C", dir)
		in, err := cmd.StdinPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		c := xbstream.NewChecker(in)
		_, werr := c.Write(stream)
		cerr := c.Close()
		_ = cmd.Wait()
		return root, errors.Join(werr, cerr)
	}
	root, err := extract(stream)
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(root, "a", "b", "x", "db1", "t.ibd"))
	require.NoError(t, err)
	assert.Equal(t, "rows", string(got))

	hostile := append(append([]byte(nil), stream...), xbstreamtest.File("../../ESCAPED", []byte("evil"))...)
	root, err = extract(hostile)
	require.ErrorIs(t, err, xbstream.ErrCorrupt)
	_, serr := os.Stat(filepath.Join(root, "a", "ESCAPED"))
	assert.ErrorIs(t, serr, os.ErrNotExist)
}
