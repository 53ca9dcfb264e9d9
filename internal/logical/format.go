// Package logical is Strata's logical backup: a consistent, parallel,
// chunked dump of a MySQL or MariaDB server into SQL files, and the
// parallel, resumable, filtered load of such a dump into a server.
//
// A dump is a set of files described by an Index. Each file is whole and
// self-contained; Dump hands them to a Sink one by one, Load reads them back
// from a Source. In the repository the files are stored one after the
// other as one stream through the backup pipeline, and the Index (with each
// file's offset, size and sha256 in that stream) is part of the manifest.
// The format is documented in docs/logical.md.
package logical

import (
	"context"
	"io"
)

// FormatVersion is the version of the file layout and Index this package
// writes and reads.
const FormatVersion = 1

// Kind is what a file of a dump holds.
type Kind string

// File kinds, in the order Load applies them.
const (
	KindUsers    Kind = "users"    // CREATE USER and GRANT statements of every account
	KindDatabase Kind = "database" // CREATE DATABASE of one schema
	KindTable    Kind = "table"    // CREATE TABLE of one base table (with all its indexes)
	KindSequence Kind = "sequence" // CREATE SEQUENCE and its state (MariaDB)
	KindData     Kind = "data"     // INSERT statements of one range of one table's rows
	KindView     Kind = "view"     // CREATE VIEW
	KindRoutine  Kind = "routine"  // CREATE PROCEDURE or CREATE FUNCTION
	KindTrigger  Kind = "trigger"  // CREATE TRIGGER
	KindEvent    Kind = "event"    // CREATE EVENT
	// KindGrants holds the GRANTs on single tables, columns and routines,
	// which need their objects: applied after every other kind.
	KindGrants Kind = "grants"
)

// Index lists the files of a dump. It is stored in the backup's manifest.
type Index struct {
	Format int    `json:"format"`
	Files  []File `json:"files"`
}

// File is one file of a dump.
type File struct {
	// Name is the file's name inside the dump: "<schema>/<object>.<kind>.sql"
	// for schema objects, "<schema>/<table>.<part>.sql" (part: 5 digits or
	// more) for data, "@users.sql" for accounts; schema and object names are
	// encoded with EncodeName. Unique within the dump.
	Name   string `json:"name"`
	Kind   Kind   `json:"kind"`
	Schema string `json:"schema,omitempty"` // the schema's real name
	Object string `json:"object,omitempty"` // the table's, view's, ... real name

	// Where the file is in the backup's stream, and its checksum.
	Offset int64  `json:"offset"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"` // hex sha256 of the file's bytes

	// Data files.
	Part  int    `json:"part,omitempty"`  // 0-based number of this range in the table
	Rows  int64  `json:"rows,omitempty"`  // rows in this file
	Range *Range `json:"range,omitempty"` // the primary-key range; nil: the table is not split by key

	// Table files.
	Table *TableMeta `json:"table,omitempty"`
}

// Range is a primary-key range of a data file: the rows whose key k has
// Lower < k <= Upper, compared as tuples in the key's column order. A nil
// bound is unbounded. Bounds are SQL literals, one per key column, as they
// are written in the data files.
type Range struct {
	Lower []string `json:"lower,omitempty"`
	Upper []string `json:"upper,omitempty"`
}

// TableMeta describes how a table's data files were written.
type TableMeta struct {
	Engine string `json:"engine"`
	// Columns are the columns each INSERT names, in order (generated
	// columns are not dumped; invisible and system-versioning columns are).
	Columns []string `json:"columns"`
	// PrimaryKey is the key that orders and splits the rows (the primary
	// key, or else a unique key of NOT NULL columns); empty: none.
	PrimaryKey []string `json:"primary_key,omitempty"`
	// DeferredIndexes are index definitions exactly as the CREATE TABLE
	// statement writes them on their own line (without the trailing comma),
	// which a load may remove from the CREATE TABLE and add after the data.
	DeferredIndexes []string `json:"deferred_indexes,omitempty"`
	// Versioned: a system-versioned table, its history rows included.
	Versioned bool `json:"versioned,omitempty"`
	// Parts is the number of data files of the table.
	Parts int `json:"parts"`
	// Rows is the number of rows dumped.
	Rows int64 `json:"rows"`
}

// Sink receives the files of a dump. Put may be called from several
// goroutines at once; it returns once the file is stored (or has failed)
// and does not keep data. It fills in f.Offset.
type Sink interface {
	Put(ctx context.Context, f *File, data []byte) error
}

// Source gives back the files of a dump. Open may be called from several
// goroutines at once; the reader fails (with an error matching ErrCorrupt)
// at its end when the bytes do not match f.SHA256 or f.Size.
type Source interface {
	Open(ctx context.Context, f *File) (io.ReadCloser, error)
}
