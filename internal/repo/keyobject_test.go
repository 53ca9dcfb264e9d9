package repo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// A key object is validated before it is used: kek_id shape, wrapped size,
// and the object must be the one of its KEK (a wrapping stored under
// another KEK's name is refused).
func TestKeyObjectsAreValidated(t *testing.T) {
	ctx := context.Background()
	good := func() map[string]any {
		return map[string]any{"kek_id": "local:7a1c40e3c381b849", "wrapped": make([]byte, 60), "created": "2026-11-24T09:30:00Z"}
	}
	for name, tc := range map[string]struct {
		obj    string // object name under the key set's prefix
		mutate func(map[string]any)
		want   string
	}{
		"huge wrapped":       {"local:7a1c40e3c381b849.json", func(k map[string]any) { k["wrapped"] = make([]byte, 8192) }, "wrapped key has 8192 bytes"},
		"kek_id with NUL":    {"local:7a1c40e3c381b849.json", func(k map[string]any) { k["kek_id"] = "local:7a\x00" }, "not printable"},
		"kek_id too long":    {"local:7a1c40e3c381b849.json", func(k map[string]any) { k["kek_id"] = strings.Repeat("a", 300) }, "longer than"},
		"another KEK's name": {"local:0000000000000000.json", nil, "whose object is"},
		"wrapped missing":    {"local:7a1c40e3c381b849.json", func(k map[string]any) { delete(k, "wrapped") }, "missing"},
	} {
		t.Run(name, func(t *testing.T) {
			b := memory.New()
			ks := repo.BinlogKeys(b, "db1", "ref1")
			k := good()
			if tc.mutate != nil {
				tc.mutate(k)
			}
			data, err := json.Marshal(k)
			require.NoError(t, err)
			key := ks.Prefix + tc.obj
			require.NoError(t, b.Put(ctx, key, bytes.NewReader(data), int64(len(data))))
			_, err = ks.List(ctx)
			require.ErrorIs(t, err, repo.ErrInvalidKeyObject)
			assert.Contains(t, err.Error(), tc.want)
			assert.Contains(t, err.Error(), key, "the error names the object")
		})
	}
	// The good one is accepted.
	b := memory.New()
	ks := repo.BinlogKeys(b, "db1", "ref1")
	data, _ := json.Marshal(good())
	require.NoError(t, b.Put(ctx, ks.Prefix+"local:7a1c40e3c381b849.json", bytes.NewReader(data), int64(len(data))))
	objs, err := ks.List(ctx)
	require.NoError(t, err)
	require.Len(t, objs, 1)
}

// FuzzDecodeKeyObject feeds arbitrary bytes to the key object decoder: it
// never panics, and what it accepts is bounded and printable.
func FuzzDecodeKeyObject(f *testing.F) {
	f.Add([]byte(`{"kek_id":"local:7a1c40e3c381b849","wrapped":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","created":"2026-11-24T09:30:00Z"}`))
	f.Add([]byte(`{"kek_id":"","wrapped":""}`))
	f.Add([]byte(`{"kek_id":"../../x","wrapped":"QUFB"}`))
	f.Add([]byte(`{"kek_id":"a\u0000b","wrapped":"QUFB"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := repo.DecodeKeyObject(data)
		if err != nil {
			return
		}
		if k.KEKID == "" || len(k.KEKID) > 256 || len(k.Wrapped) == 0 || len(k.Wrapped) > 4096 {
			t.Fatalf("accepted kek_id of %d bytes, wrapped of %d", len(k.KEKID), len(k.Wrapped))
		}
		for _, c := range []byte(k.KEKID) {
			if c < 0x21 || c > 0x7e {
				t.Fatalf("accepted kek_id %q", k.KEKID)
			}
		}
		name := repo.KeyObjectName(k.KEKID)
		if strings.ContainsAny(name, "/\\\x00") || !strings.HasSuffix(name, ".json") {
			t.Fatalf("object name %q of an accepted kek_id %q", name, k.KEKID)
		}
	})
}
