package tablecopy

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/strata-backup/strata/internal/drill"
)

// Methods of Result.Method.
const (
	MethodTransport = "transport"
	MethodLogical   = "logical"
)

// Params is one table's copy from the scratch server to the live server.
type Params struct {
	// Scratch is the scratch server (the restored backup), ScratchDatadir
	// its datadir.
	Scratch        *sql.DB
	ScratchDatadir string
	// Live is the live server, LiveDatadir its configured datadir
	// (instances[].datadir): the server's @@datadir must be the same
	// directory.
	Live        *sql.DB
	LiveDatadir string
	// Src is the table on the scratch server, Dst its name on the live one.
	Src, Dst TableName
	// RestoreID names the work tables (WorkName, ExportName), so that a
	// retried copy finds, and removes, what an earlier attempt left.
	RestoreID string
	// Replace replaces an existing Dst (atomically, by RENAME TABLE, once
	// the restored table is complete and verified).
	Replace bool
	// Retry says an earlier attempt of this copy may have run: a Dst that
	// exists with the source's rows and checksum is taken as its work (the
	// attempt died after its rename) rather than refused as ErrTableExists.
	Retry bool
	// Progress, when set, is called with what the copy does and the bytes
	// copied so far (for heartbeats).
	Progress func(step string, bytes int64)
}

// Phase is one step of the copy and its time.
type Phase struct {
	Phase   string  `json:"phase"`
	Seconds float64 `json:"seconds"`
}

// Result is what the copy did.
type Result struct {
	Source TableName `json:"source"`
	Dest   TableName `json:"dest"`
	// Method is MethodTransport or MethodLogical.
	Method    string `json:"method"`
	Engine    string `json:"engine"`
	RowFormat string `json:"row_format,omitempty"`
	// SourceSum is the table's on the scratch server, DestSum on the live
	// server after the import: the copy fails unless they are equal.
	SourceSum Sum `json:"source_sum"`
	DestSum   Sum `json:"dest_sum"`
	// Bytes is the size of the tablespace files copied.
	Bytes int64 `json:"bytes"`
	// Replaced says an existing Dst was replaced.
	Replaced bool     `json:"replaced,omitempty"`
	Phases   []Phase  `json:"phases"`
	Notes    []string `json:"notes,omitempty"`
}

func (r *Result) timed(name string, f func() error) error {
	t0 := time.Now()
	err := f()
	r.Phases = append(r.Phases, Phase{Phase: name, Seconds: time.Since(t0).Seconds()})
	return err
}

// Copy brings Src from the scratch server into the live server as Dst.
//
// Transport (an InnoDB table in its own tablespace, servers of one flavor,
// major.minor version and page size): on the scratch server, the table is
// moved to ExportName (an ASCII name, so its file's name is known whatever
// the source's name); on the live server a work table (WorkName) is
// created with the source's definition and its tablespace discarded; the
// scratch table is flushed for export, its .ibd and .cfg copied into the
// live datadir under the work table's name (owned like the schema's
// directory), the export lock released, and the tablespace imported. The
// row count and CHECKSUM TABLE of the work table must equal the source's;
// then the work table is renamed to Dst (with Replace: Dst and the work
// table swapped in one RENAME TABLE, and the old Dst dropped). Nothing of
// the live server is locked but the work table and, for the rename, Dst.
//
// Any other table goes through copyLogical. On failure, and on
// cancellation, the work table and the files copied for it are removed:
// a table with a discarded tablespace is never left behind.
func Copy(ctx context.Context, p Params) (res *Result, err error) {
	if p.RestoreID == "" {
		return nil, errors.New("tablecopy: a restore id is required")
	}
	res = &Result{Source: p.Src, Dest: p.Dst}
	progress := func(step string, n int64) {
		if p.Progress != nil {
			p.Progress(step, n)
		}
	}
	var scratchSrv, liveSrv Server
	var t *Table
	work := WorkName(p.Dst, p.RestoreID)
	export := ExportName(p.RestoreID)
	var live *sql.Conn
	destExists := false
	if err := res.timed("inspect", func() error {
		var err error
		if scratchSrv, err = InspectServer(ctx, p.Scratch); err != nil {
			return fmt.Errorf("scratch server: %w", err)
		}
		if liveSrv, err = InspectServer(ctx, p.Live); err != nil {
			return fmt.Errorf("live server: %w", err)
		}
		if p.LiveDatadir == "" {
			p.LiveDatadir = liveSrv.Datadir
		}
		if err := SameDatadir(p.LiveDatadir, liveSrv.Datadir); err != nil {
			return err
		}
		if t, err = inspectSource(ctx, p.Scratch, p.Src, export); err != nil {
			return err
		}
		res.Engine, res.RowFormat = t.Engine, t.RowFormat
		// One connection for the live server's DDL: its session settings
		// hold for every statement.
		if live, err = p.Live.Conn(ctx); err != nil {
			return fmt.Errorf("live server: %w", err)
		}
		for _, q := range []string{"SET SESSION foreign_key_checks = 0", "SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'"} {
			if _, err := live.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("live server: %s: %w", q, err)
			}
		}
		// Checked again here, right before any change: a table created
		// under the name since the restore began is not overwritten.
		if destExists, err = CheckDestination(ctx, live, p.Dst, p.Replace); err != nil {
			if errors.Is(err, ErrTableExists) && p.Retry && done(ctx, p, live, t, export, res) {
				return errDone
			}
			return err
		}
		// A work table of this restore id is an earlier attempt's.
		return dropWork(ctx, live, liveSrv.Datadir, work)
	}); err != nil {
		if live != nil {
			discard(live)
		}
		if errors.Is(err, errDone) {
			return res, nil
		}
		return nil, err
	}
	defer discard(live)
	created := false
	defer func() {
		if err != nil && created {
			// On a context of its own: a cancelled copy cleans up too.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if derr := dropWork(cctx, live, liveSrv.Datadir, work); derr != nil {
				err = fmt.Errorf("%w; and removing the half-made table %s failed: %v (drop it by hand)", err, work, derr)
			}
		}
	}()

	reason := Transportable(t, scratchSrv, liveSrv)
	src := p.Src
	if t.Name == export {
		src = export
	}
	var ibd string
	if reason == "" {
		// Move the source to its ASCII export name on the scratch server
		// (a throw-away server: its triggers, which RENAME TABLE across
		// schemas refuses, are dropped there).
		err := res.timed("prepare export", func() error {
			if t.Name != export {
				for _, tr := range t.Triggers {
					if _, err := p.Scratch.ExecContext(ctx, "DROP TRIGGER "+QuoteIdent(p.Src.Schema)+"."+QuoteIdent(tr)); err != nil {
						return fmt.Errorf("scratch server: drop trigger %s: %w", tr, err)
					}
				}
				for _, q := range []string{"CREATE DATABASE IF NOT EXISTS " + QuoteIdent(export.Schema),
					"RENAME TABLE " + p.Src.Quoted() + " TO " + export.Quoted()} {
					if _, err := p.Scratch.ExecContext(ctx, q); err != nil {
						return fmt.Errorf("scratch server: %s: %w", q, err)
					}
				}
				src = export
			}
			ibd = filepath.Join(p.ScratchDatadir, export.Schema, export.Table+".ibd")
			if _, err := os.Stat(ibd); errors.Is(err, os.ErrNotExist) {
				reason = "not in a tablespace of its own (innodb_file_per_table was off when it was created)"
			} else if err != nil {
				return err
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(t.Triggers) > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("the table's triggers (%s) are not restored: re-create them from the backup's schema", strings.Join(t.Triggers, ", ")))
		}
	}
	if reason != "" {
		res.Method = MethodLogical
		created = true // copyLogical creates the work table
		lerr := res.timed("logical copy", func() error {
			return copyLogical(ctx, p.Scratch, p.Live, src, work, filepath.Dir(filepath.Clean(p.ScratchDatadir)))
		})
		if lerr != nil {
			return nil, lerr
		}
	} else {
		res.Method = MethodTransport
		if err := transport(ctx, p, res, live, t, src, work, ibd, liveSrv.Datadir, &created, progress); err != nil {
			return nil, err
		}
	}

	if err := res.timed("verify", func() error {
		var err error
		if res.SourceSum.Checksum == "" {
			if res.SourceSum, err = Checksum(ctx, p.Scratch, src); err != nil {
				return fmt.Errorf("scratch server: %w", err)
			}
		}
		if res.DestSum, err = Checksum(ctx, live, work); err != nil {
			return fmt.Errorf("live server: %w", err)
		}
		// Every index of the imported table is consistent.
		if msgs, err := drill.CheckTable(ctx, live, work.Schema, work.Table); err != nil {
			return fmt.Errorf("live server: check table %s: %w", work, err)
		} else if len(msgs) > 0 {
			return fmt.Errorf("%w: CHECK TABLE of the imported table %s: %s", ErrMismatch, work, strings.Join(msgs, "; "))
		}
		if res.SourceSum == res.DestSum {
			return nil
		}
		mismatch := fmt.Errorf("%w: %s on the scratch server has %d rows, checksum %s; the imported table %s has %d rows, checksum %s",
			ErrMismatch, p.Src, res.SourceSum.Rows, res.SourceSum.Checksum, work, res.DestSum.Rows, res.DestSum.Checksum)
		if res.SourceSum.Rows != res.DestSum.Rows {
			return mismatch
		}
		// CHECKSUM TABLE differs for equal rows of some tables (virtual
		// or instantly added columns, system versioning: it sums the
		// server's record image, not the values): compare the values.
		if res.SourceSum.Content, err = contentSum(ctx, p.Scratch, src); err != nil {
			return fmt.Errorf("scratch server: %w", err)
		}
		if res.DestSum.Content, err = contentSum(ctx, live, work); err != nil {
			return fmt.Errorf("live server: %w", err)
		}
		if res.SourceSum.Content != res.DestSum.Content {
			return fmt.Errorf("%w; the sums of their column values differ too (%s, %s)", mismatch, res.SourceSum.Content, res.DestSum.Content)
		}
		res.Notes = append(res.Notes, fmt.Sprintf("CHECKSUM TABLE differs (%s on the scratch server, %s on the live server), as it does for such a table (virtual or instantly added columns, system versioning); the sums of the rows' column values agree (%s)",
			res.SourceSum.Checksum, res.DestSum.Checksum, res.DestSum.Content))
		return nil
	}); err != nil {
		return nil, err
	}
	if err := res.timed("rename", func() error {
		if !destExists {
			// Fails, leaving Dst alone, if a table took the name meanwhile.
			_, err := live.ExecContext(ctx, "RENAME TABLE "+work.Quoted()+" TO "+p.Dst.Quoted())
			if err != nil {
				return fmt.Errorf("live server: rename %s to %s: %w", work, p.Dst, err)
			}
			return nil
		}
		old := ReplacedName(p.Dst, p.RestoreID)
		if _, err := live.ExecContext(ctx, "DROP TABLE IF EXISTS "+old.Quoted()); err != nil {
			return fmt.Errorf("live server: %w", err)
		}
		if _, err := live.ExecContext(ctx, "RENAME TABLE "+p.Dst.Quoted()+" TO "+old.Quoted()+", "+work.Quoted()+" TO "+p.Dst.Quoted()); err != nil {
			return fmt.Errorf("live server: swap %s in for %s: %w", work, p.Dst, err)
		}
		res.Replaced = true
		if _, err := live.ExecContext(ctx, "DROP TABLE "+old.Quoted()); err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("the replaced table is kept as %s: dropping it failed: %v", old, err))
		}
		return nil
	}); err != nil {
		return nil, err
	}
	created = false
	return res, nil
}

// transport moves the tablespace of src (on the scratch server, at ibd)
// into the live server's work table.
func transport(ctx context.Context, p Params, res *Result, live *sql.Conn, t *Table, src, work TableName, ibd, liveDatadir string,
	created *bool, progress func(string, int64)) error {
	def, fks, err := Definition(t, work)
	if err != nil {
		return err
	}
	if fks {
		res.Notes = append(res.Notes, "foreign keys are re-created with names the server generates (constraint names are unique per schema)")
	}
	var dir string
	if err := res.timed("create", func() error {
		if _, err := live.ExecContext(ctx, def); err != nil {
			return fmt.Errorf("live server: create %s: %w", work, err)
		}
		*created = true
		var err error
		if dir, err = locate(liveDatadir, work.Table); err != nil {
			return err
		}
		if IsFileSafe(p.Dst.Schema) && filepath.Base(dir) != p.Dst.Schema {
			return fmt.Errorf("%w: the file of %s is in %s, not in the directory of schema %s", ErrDatadir, work, dir, p.Dst.Schema)
		}
		if _, err := live.ExecContext(ctx, "ALTER TABLE "+work.Quoted()+" DISCARD TABLESPACE"); err != nil {
			return fmt.Errorf("live server: discard the tablespace of %s: %w", work, err)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := res.timed("export and copy", func() error {
		ec, err := p.Scratch.Conn(ctx)
		if err != nil {
			return fmt.Errorf("scratch server: %w", err)
		}
		defer discard(ec)
		if _, err := ec.ExecContext(ctx, "FLUSH TABLES "+src.Quoted()+" FOR EXPORT"); err != nil {
			return fmt.Errorf("scratch server: flush %s for export: %w", src, err)
		}
		// UNLOCK TABLES before the connection goes back to the pool.
		defer func() { _, _ = ec.ExecContext(context.WithoutCancel(ctx), "UNLOCK TABLES") }()
		if res.SourceSum, err = Checksum(ctx, ec, src); err != nil {
			return fmt.Errorf("scratch server: %w", err)
		}
		owner, err := os.Stat(dir)
		if err != nil {
			return err
		}
		cfg := strings.TrimSuffix(ibd, ".ibd") + ".cfg"
		n, err := copyFile(ctx, ibd, filepath.Join(dir, work.Table+".ibd"), owner, func(b int64) { progress("copying the tablespace", b) })
		if err != nil {
			return err
		}
		res.Bytes += n
		if _, err := os.Stat(cfg); err == nil {
			n, err := copyFile(ctx, cfg, filepath.Join(dir, work.Table+".cfg"), owner, nil)
			if err != nil {
				return err
			}
			res.Bytes += n
		}
		return nil
	}); err != nil {
		return err
	}
	return res.timed("import", func() error {
		progress("importing the tablespace", res.Bytes)
		if _, err := live.ExecContext(ctx, "ALTER TABLE "+work.Quoted()+" IMPORT TABLESPACE"); err != nil {
			return fmt.Errorf("live server: import the tablespace of %s: %w", work, err)
		}
		_ = os.Remove(filepath.Join(dir, work.Table+".cfg"))
		// An imported table's FULLTEXT indexes do not answer (their
		// auxiliary tables are not in the tablespace): dropped and added
		// again, on the work table only.
		fts := fulltext.FindAllStringSubmatch(def, -1)
		for _, m := range fts {
			for _, q := range []string{"ALTER TABLE " + work.Quoted() + " DROP INDEX " + m[2], "ALTER TABLE " + work.Quoted() + " ADD " + m[1]} {
				if _, err := live.ExecContext(ctx, q); err != nil {
					return fmt.Errorf("live server: rebuild the FULLTEXT index %s of %s: %s: %w", m[2], work, q, err)
				}
			}
		}
		if len(fts) > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("%d FULLTEXT index(es) rebuilt after the import (the import does not bring their auxiliary tables)", len(fts)))
		}
		return nil
	})
}

// errDone stops a retried copy whose earlier attempt finished.
var errDone = errors.New("copied by an earlier attempt")

// done reports whether Dst is the copy an earlier attempt made: its work
// table is gone and Dst has the source's rows and checksum. It fills res.
func done(ctx context.Context, p Params, live Querier, t *Table, export TableName, res *Result) bool {
	if ok, err := Exists(ctx, live, WorkName(p.Dst, p.RestoreID)); err != nil || ok {
		return false
	}
	src := p.Src
	if t.Name == export {
		src = export
	}
	ss, err := Checksum(ctx, p.Scratch, src)
	if err != nil {
		return false
	}
	ds, err := Checksum(ctx, live, p.Dst)
	if err != nil || ss.Rows != ds.Rows {
		return false
	}
	if ss.Checksum != ds.Checksum {
		// As the verify step: equal values where CHECKSUM TABLE differs.
		if ss.Content, err = contentSum(ctx, p.Scratch, src); err != nil {
			return false
		}
		if ds.Content, err = contentSum(ctx, live, p.Dst); err != nil || ss.Content != ds.Content {
			return false
		}
	}
	res.SourceSum, res.DestSum, res.Method = ss, ds, MethodTransport
	res.Notes = append(res.Notes, fmt.Sprintf("%s was restored by an earlier attempt of this restore (its rows and checksum are the source's)", p.Dst))
	return true
}

// contentSum is an order-independent sum of a table's rows' column
// values: each row hashes to the SHA-256 of the SHA-256s of its columns'
// bytes (CAST AS BINARY; NULL is 'N'), and the sum is the exact sum of the
// first 64 bits of the row hashes (drill.SumSQL's construction, with SHA2,
// which both servers have: MySQL 9 has no MD5).
func contentSum(ctx context.Context, q Querier, n TableName) (string, error) {
	cols, err := drill.Columns(ctx, q, n.Schema, n.Table)
	if err != nil {
		return "", err
	}
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = "IFNULL(SHA2(CAST(" + QuoteIdent(c) + " AS BINARY), 256), 'N')"
	}
	query := "SELECT COALESCE(SUM(CAST(CONV(LEFT(SHA2(CONCAT_WS(',', " + strings.Join(parts, ", ") + "), 256), 16), 16, 10) AS UNSIGNED)), 0) FROM " + n.Quoted()
	var sum string
	if err := q.QueryRowContext(ctx, query).Scan(&sum); err != nil {
		return "", fmt.Errorf("sum of the column values of %s: %w", n, err)
	}
	return sum, nil
}

// discard closes the connection instead of returning it to its pool: its
// session settings (and any lock) must not leak into another user of the
// pool.
func discard(c *sql.Conn) {
	_ = c.Raw(func(any) error { return driver.ErrBadConn })
	_ = c.Close()
}

// inspectSource inspects the source table, or, when an earlier attempt of
// the copy moved it to its export name already, the export.
func inspectSource(ctx context.Context, q Querier, src, export TableName) (*Table, error) {
	t, err := Inspect(ctx, q, src)
	if errors.Is(err, ErrTableNotFound) {
		if ok, xerr := Exists(ctx, q, export); xerr == nil && ok {
			t, err = Inspect(ctx, q, export)
		}
	}
	return t, err
}

// dropWork drops the work table and removes its files from the live
// datadir (a table whose tablespace was discarded leaves the files copied
// for it when it is dropped).
func dropWork(ctx context.Context, live Querier, datadir string, work TableName) error {
	if _, err := live.ExecContext(ctx, "DROP TABLE IF EXISTS "+work.Quoted()); err != nil {
		return fmt.Errorf("live server: drop %s: %w", work, err)
	}
	ents, err := os.ReadDir(datadir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		for _, ext := range []string{".ibd", ".cfg"} {
			f := filepath.Join(datadir, e.Name(), work.Table+ext)
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// locate finds the schema directory in datadir that holds name.ibd: the
// name is the work table's, unique to the restore.
func locate(datadir, name string) (string, error) {
	ents, err := os.ReadDir(datadir)
	if err != nil {
		return "", err
	}
	var found []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if _, err := os.Stat(filepath.Join(datadir, e.Name(), name+".ibd")); err == nil {
			found = append(found, filepath.Join(datadir, e.Name()))
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return "", fmt.Errorf("%w: no %s.ibd in any schema directory of %s: is innodb_file_per_table off on the live server, or is its datadir elsewhere?", ErrDatadir, name, datadir)
	}
	return "", fmt.Errorf("%w: %s.ibd is in more than one schema directory of %s (%s)", ErrDatadir, name, datadir, strings.Join(found, ", "))
}

// SameDatadir checks that the configured datadir is the server's.
func SameDatadir(configured, server string) error {
	a, b := filepath.Clean(configured), filepath.Clean(server)
	if a == b {
		return nil
	}
	ra, err1 := filepath.EvalSymlinks(a)
	rb, err2 := filepath.EvalSymlinks(b)
	if err1 == nil && err2 == nil && ra == rb {
		return nil
	}
	return fmt.Errorf("%w: instances[].datadir is %s, but the live server's @@datadir is %s: fix the config (the table's files are copied into the datadir)", ErrDatadir, configured, server)
}

// copyFile copies src to a new file dst (never over an existing one),
// synced, with the mode 0640 and the owner of the schema directory owner
// (the server's user).
func copyFile(ctx context.Context, src, dst string, owner os.FileInfo, progress func(int64)) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return 0, fmt.Errorf("live datadir: %w", err)
	}
	n, err := copyCtx(ctx, out, in, progress)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		if st, ok := owner.Sys().(*syscall.Stat_t); ok && (int(st.Uid) != os.Getuid() || int(st.Gid) != os.Getgid()) {
			if cerr := os.Chown(dst, int(st.Uid), int(st.Gid)); cerr != nil {
				err = fmt.Errorf("give %s to the server's user (uid %d, gid %d, the owner of %s): %w; run the agent as root or as the server's user",
					dst, st.Uid, st.Gid, filepath.Dir(dst), cerr)
			}
		}
	}
	if err != nil {
		_ = os.Remove(dst)
		return 0, err
	}
	return n, nil
}

// copyCtx copies in 4 MiB blocks, stopping when ctx is done.
func copyCtx(ctx context.Context, w io.Writer, r io.Reader, progress func(int64)) (int64, error) {
	buf := make([]byte, 4<<20)
	var n int64
	last := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, rerr := r.Read(buf)
		if k > 0 {
			if _, err := w.Write(buf[:k]); err != nil {
				return n, err
			}
			n += int64(k)
		}
		if progress != nil && time.Since(last) > time.Second {
			progress(n)
			last = time.Now()
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
