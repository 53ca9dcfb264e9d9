package logical

import (
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalidIndex marks an Index that breaks a rule of the format: it was
// not written by Dump, or was altered.
var ErrInvalidIndex = errors.New("invalid logical dump index")

// MaxFiles bounds the files of one dump.
const MaxFiles = 1 << 20

var kinds = map[Kind]bool{KindUsers: true, KindDatabase: true, KindTable: true, KindSequence: true,
	KindData: true, KindView: true, KindRoutine: true, KindTrigger: true, KindEvent: true, KindGrants: true}

// Validate checks the index of a dump whose stream is streamSize bytes:
// known format and kinds; names that are relative paths of one or two
// plain segments (never "..", never absolute), unique; the files tile the
// stream exactly, in offset order, without gap or overlap; every schema
// object names its schema and object; a table's data files are numbered
// 0..parts-1.
func (x *Index) Validate(streamSize int64) error {
	var problems []string
	add := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	if x.Format != FormatVersion {
		add("format %d is not %d (upgrade Strata to read a newer one)", x.Format, FormatVersion)
	}
	if len(x.Files) > MaxFiles {
		add("%d files are more than %d", len(x.Files), MaxFiles)
	}
	names := make(map[string]bool, len(x.Files))
	order := make([]int, len(x.Files))
	type tkey struct{ schema, table string }
	parts := map[tkey]map[int]bool{}
	tables := map[tkey]int{}
	for i := range x.Files {
		order[i] = i
		f := &x.Files[i]
		if err := checkFileName(f.Name); err != nil {
			add("file %d: %v", i, err)
		} else if names[f.Name] {
			add("file %d: name %q is listed twice", i, f.Name)
		}
		names[f.Name] = true
		if !kinds[f.Kind] {
			add("file %d (%s): kind %q is unknown", i, clip(f.Name), clip(string(f.Kind)))
		}
		if f.Kind != KindUsers && f.Kind != KindGrants && f.Schema == "" {
			add("file %d (%s): no schema", i, clip(f.Name))
		}
		if f.Kind != KindUsers && f.Kind != KindGrants && f.Kind != KindDatabase && f.Object == "" {
			add("file %d (%s): no object name", i, clip(f.Name))
		}
		if f.Offset < 0 || f.Size < 0 || f.Rows < 0 || f.Part < 0 {
			add("file %d (%s): negative offset, size, rows or part", i, clip(f.Name))
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != 32 || strings.ToLower(f.SHA256) != f.SHA256 {
			add("file %d (%s): sha256 %q is not 64 lowercase hex characters", i, clip(f.Name), clip(f.SHA256))
		}
		k := tkey{f.Schema, f.Object}
		switch f.Kind {
		case KindTable:
			if f.Table == nil {
				add("file %d (%s): a table file without its table description", i, clip(f.Name))
				continue
			}
			if f.Table.Parts < 0 || f.Table.Rows < 0 || len(f.Table.Columns) == 0 {
				add("file %d (%s): table description has negative parts or rows, or no columns", i, clip(f.Name))
			}
			if _, dup := tables[k]; dup {
				add("file %d (%s): a second table file of %s.%s", i, clip(f.Name), clip(f.Schema), clip(f.Object))
			}
			tables[k] = f.Table.Parts
		case KindData:
			if parts[k] == nil {
				parts[k] = map[int]bool{}
			}
			if parts[k][f.Part] {
				add("file %d (%s): part %d of %s.%s is listed twice", i, clip(f.Name), f.Part, clip(f.Schema), clip(f.Object))
			}
			parts[k][f.Part] = true
		}
	}
	for k, ps := range parts {
		n, ok := tables[k]
		if !ok {
			add("data of %s.%s without its table file", clip(k.schema), clip(k.table))
			continue
		}
		for p := range ps {
			if p >= n {
				add("data part %d of %s.%s is beyond its table's %d parts", p, clip(k.schema), clip(k.table), n)
			}
		}
		if len(ps) != n {
			add("%s.%s has %d data files where its table records %d", clip(k.schema), clip(k.table), len(ps), n)
		}
	}
	for k, n := range tables {
		if n > 0 && parts[k] == nil {
			add("%s.%s records %d data files but none is listed", clip(k.schema), clip(k.table), n)
		}
	}
	if len(problems) == 0 {
		sort.Slice(order, func(a, b int) bool { return x.Files[order[a]].Offset < x.Files[order[b]].Offset })
		var off int64
		for _, i := range order {
			f := &x.Files[i]
			if f.Offset != off {
				add("file %s is at offset %d where the previous file ends at %d (files tile the stream)", clip(f.Name), f.Offset, off)
				break
			}
			off += f.Size
		}
		if len(problems) == 0 && off != streamSize {
			add("the files end at byte %d of a %d-byte stream", off, streamSize)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidIndex, strings.Join(problems, "; "))
	}
	return nil
}

// checkFileName accepts one or two path segments of letters, digits and
// "_-.%@", none of them "." or "..".
func checkFileName(name string) error {
	if name == "" || len(name) > 4096 {
		return fmt.Errorf("name %q is empty or too long", clip(name))
	}
	segs := strings.Split(name, "/")
	if len(segs) > 2 {
		return fmt.Errorf("name %q has more than two path segments", clip(name))
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return fmt.Errorf("name %q has an empty, . or .. segment", clip(name))
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("_-.%@", c) >= 0) {
				return fmt.Errorf("name %q has the byte %q, which a dump's file names never hold", clip(name), c)
			}
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
