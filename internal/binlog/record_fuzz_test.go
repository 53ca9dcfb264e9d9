package binlog

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzDecodeSegment feeds arbitrary bytes to the index record decoder: it
// never panics, and a record it accepts has names that stay inside the
// directories they are joined to and sizes within bounds.
func FuzzDecodeSegment(f *testing.F) {
	valid := `{"seq":1,"file":"binlog.000001","start":4,"end":104,"first_time":"2026-11-24T09:30:00Z","last_time":"2026-11-24T09:30:01Z",` +
		`"data_key":"data/000000000001-0a1b2c3d4e5f.zst","server_id":1,"identity":"server_id:1 domain:0","events":3,"raw_size":100,` +
		`"stored_size":60,"sha256":"` + strings.Repeat("ab", 32) + `","archived_at":"2026-11-24T09:30:02.123456789Z"}`
	f.Add([]byte(valid))
	f.Add([]byte(strings.Replace(valid, `"binlog.000001"`, `"../../../ESCAPED.000001"`, 1)))
	f.Add([]byte(strings.Replace(valid, `"raw_size":100`, `"raw_size":1099511627776`, 1)))
	f.Add([]byte(strings.Replace(valid, `"data/000000000001-0a1b2c3d4e5f.zst"`, `"../../x"`, 1)))
	f.Add([]byte(strings.Replace(valid, `"server_id":1`, `"key_ref":"../k","mac":"AAAA","server_id":1`, 1)))
	f.Add([]byte(`{"seq":1,"file":"a.1","start":4,"end":3}`))
	f.Add([]byte(`{"file":"binlog.000001\u0000/x"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		seg, err := DecodeSegment(data)
		if err != nil {
			return
		}
		dir := "/rebuild/dir"
		for _, name := range []string{seg.File, seg.Next} {
			if name == "" {
				continue
			}
			if p := filepath.Join(dir, name); filepath.Dir(p) != dir {
				t.Fatalf("accepted file %q leaves the directory: %s", name, p)
			}
		}
		st := &Store{Instance: "i1"}
		if k := st.segmentDataKey(seg); filepath.Dir(k) != "i1/binlogs/data" {
			t.Fatalf("accepted data key %q outside data/: %s", seg.DataKey, k)
		}
		if seg.KeyRef != "" && strings.ContainsAny(seg.KeyRef, "/\\") || seg.KeyRef == ".." {
			t.Fatalf("accepted key_ref %q", seg.KeyRef)
		}
		if seg.RawSize < 0 || seg.RawSize > MaxSegmentRawSize || seg.StoredSize < 0 || seg.StoredSize > maxSegmentStoredSize ||
			seg.End < seg.Start || seg.RawSize != int64(seg.End-seg.Start) {
			t.Fatalf("accepted sizes raw %d stored %d, %d-%d", seg.RawSize, seg.StoredSize, seg.Start, seg.End)
		}
		// What is accepted encodes and decodes to the same record.
		b, err := json.Marshal(seg)
		if err != nil {
			t.Fatalf("accepted record does not encode: %v", err)
		}
		again, err := DecodeSegment(b)
		if err != nil {
			t.Fatalf("accepted record, encoded again, is refused: %v", err)
		}
		m1, err1 := macMessage(seg)
		m2, err2 := macMessage(again)
		if err1 != nil || err2 != nil || string(m1) != string(m2) {
			t.Fatalf("the MAC message of an accepted record is not stable across a round trip")
		}
	})
}

// FuzzDecodeRollup feeds arbitrary bytes to the index roll-up decoder: it
// never panics, and a roll-up it accepts holds exactly its range, each
// record valid and of its file, and encodes and decodes to the same.
func FuzzDecodeRollup(f *testing.F) {
	seg := `{"seq":%d,"file":"binlog.000001","start":%d,"end":%d,"first_time":"2026-11-24T09:30:00Z","last_time":"2026-11-24T09:30:01Z",` +
		`"data_key":"data/%012d-0a1b2c3d4e5f.zst","server_id":1,"identity":"server_id:1 domain:0","events":1,"raw_size":100,` +
		`"stored_size":60,"sha256":"` + strings.Repeat("ab", 32) + `","archived_at":"2026-11-24T09:30:02Z"}`
	var segs []Segment
	for i := range 3 {
		s, err := DecodeSegment(fmt.Appendf(nil, seg, 7+i, 4+100*i, 104+100*i, 7+i))
		if err != nil {
			f.Fatal(err)
		}
		segs = append(segs, *s)
	}
	sum, _ := rollupSum(segs)
	valid, _ := json.Marshal(&Rollup{Version: 1, File: "binlog.000001", FirstSeq: 7, LastSeq: 9, Segments: segs, SHA256: sum})
	if _, err := DecodeRollup(valid); err != nil {
		f.Fatalf("the valid seed is refused: %v", err)
	}
	f.Add(valid)
	f.Add([]byte(strings.Replace(string(valid), `"last_seq":9`, `"last_seq":99999999`, 1)))
	f.Add([]byte(strings.Replace(string(valid), `"file":"binlog.000001","first_seq"`, `"file":"../x.000001","first_seq"`, 1)))
	f.Add([]byte(strings.Replace(string(valid), `"seq":8`, `"seq":10`, 1)))
	f.Add([]byte(`{"version":1,"file":"a.1","first_seq":1,"last_seq":0,"segments":[]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeRollup(data)
		if err != nil {
			return
		}
		if CheckFileName(r.File) != nil || r.FirstSeq == 0 || r.LastSeq < r.FirstSeq || r.LastSeq-r.FirstSeq >= RollupMaxSegments ||
			uint64(len(r.Segments)) != r.LastSeq-r.FirstSeq+1 {
			t.Fatalf("accepted roll-up %s %d-%d of %d records", r.File, r.FirstSeq, r.LastSeq, len(r.Segments))
		}
		for i, s := range r.Segments {
			if s.Seq != r.FirstSeq+uint64(i) || s.File != r.File || s.Validate() != nil {
				t.Fatalf("accepted record %d (segment %d of %q)", i, s.Seq, s.File)
			}
		}
		if r.KeyRef != "" && checkElement(r.KeyRef) != nil {
			t.Fatalf("accepted key_ref %q", r.KeyRef)
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("accepted roll-up does not encode: %v", err)
		}
		again, err := DecodeRollup(b)
		if err != nil {
			t.Fatalf("accepted roll-up, encoded again, is refused: %v", err)
		}
		if string(rollupMACMessage(r)) != string(rollupMACMessage(again)) {
			t.Fatalf("the MAC message of an accepted roll-up is not stable across a round trip")
		}
	})
}
