package tablecopy

import (
	"context"
	"database/sql"
	"fmt"
	"os"

	"github.com/strata-backup/strata/internal/logical"
)

// copyLogical copies the table src of the scratch server into a new table
// dst of the live server through the logical dump and load
// (internal/logical), for the tables whose tablespace cannot move (MyISAM,
// Aria, partitioned tables, servers of other versions): src is dumped from
// the scratch server into a directory under tmpParent (the scratch
// instance's own, removed after), and its table and data files are loaded
// into the live server as dst, with the load's deferred indexes. It creates
// dst; Copy verifies it and renames it, and drops it on failure.
func copyLogical(ctx context.Context, scratch, live *sql.DB, src, dst TableName, tmpParent string) error {
	dir, err := os.MkdirTemp(tmpParent, "strata-logical-copy-")
	if err != nil {
		return fmt.Errorf("logical copy: %w", err)
	}
	defer os.RemoveAll(dir)
	res, err := logical.Dump(ctx, scratch, &logical.DirSink{Dir: dir}, logical.DumpOptions{
		Parallelism: 1,
		Include:     []string{logical.QuoteIdent(src.Schema) + "." + logical.QuoteIdent(src.Table)},
	})
	if err != nil {
		return fmt.Errorf("logical copy: dump %s from the scratch server: %w", src, err)
	}
	idx := &logical.Index{Format: res.Index.Format}
	for _, f := range res.Index.Files {
		if (f.Kind == logical.KindTable || f.Kind == logical.KindData) && f.Schema == src.Schema && f.Object == src.Table {
			idx.Files = append(idx.Files, f)
		}
	}
	if len(idx.Files) == 0 {
		return fmt.Errorf("logical copy: the dump of the scratch server has no table %s", src)
	}
	_, err = logical.Load(ctx, live, idx, logical.DirSource{Dir: dir}, logical.LoadOptions{
		Parallelism:  2,
		Rename:       map[string]string{logical.QuoteName(src.Schema, src.Table): logical.QuoteName(dst.Schema, dst.Table)},
		DeferIndexes: true,
	})
	if err != nil {
		return fmt.Errorf("logical copy: load %s into the live server as %s: %w", src, dst, err)
	}
	return nil
}
