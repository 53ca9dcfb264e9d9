package logical

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// valueKind is how a column's values are written as SQL literals.
type valueKind int

const (
	kindString   valueKind = iota // '...' with \0 \' \\ \n \r \Z escaped
	kindNumber                    // the server's text, unquoted
	kindHex                       // 0x... (X'' when empty)
	kindTemporal                  // read as CAST(... AS CHAR), written as a string
	kindJSON                      // MySQL JSON: _utf8mb4'...' (NAMES binary refuses binary JSON)
)

// kindOf picks the literal form for an information_schema DATA_TYPE.
func kindOf(dataType, charset string) valueKind {
	switch dataType {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint",
		"decimal", "numeric", "float", "double", "real", "year":
		return kindNumber
	case "bit", "binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob",
		"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
		"multipolygon", "geometrycollection", "geomcollection", "vector":
		return kindHex
	case "date", "datetime", "timestamp":
		return kindTemporal
	case "json":
		if charset == "" { // MySQL's native JSON; MariaDB's JSON is LONGTEXT with a charset
			return kindJSON
		}
	}
	if charset == "binary" {
		return kindHex
	}
	return kindString
}

// selectExpr is how the dump selects the column: temporal values as text,
// so a driver that parses times (parseTime) cannot reformat them.
func (c column) selectExpr() string {
	if c.kind == kindTemporal {
		return "CAST(" + QuoteIdent(c.Name) + " AS CHAR)"
	}
	return QuoteIdent(c.Name)
}

// appendValue appends v (nil: NULL) as the literal a data file writes.
func appendValue(b []byte, k valueKind, v []byte) []byte {
	if v == nil {
		return append(b, "NULL"...)
	}
	switch k {
	case kindNumber:
		return append(b, v...)
	case kindHex:
		return appendHex(b, v)
	case kindJSON:
		b = append(b, "_utf8mb4"...)
		return appendQuoted(b, v)
	}
	return appendQuoted(b, v)
}

// appendBound appends a key value as a Range bound literal: like a data
// file value, but a character column's string carries its character set
// introducer, so that on a NAMES binary connection it compares in the
// column's collation, the order the rows were dumped in.
func appendBound(b []byte, c column, v []byte) []byte {
	if c.kind == kindString && c.Charset != "" && c.Charset != "binary" {
		b = append(b, '_')
		b = append(b, c.Charset...)
	}
	return appendValue(b, c.kind, v)
}

func appendHex(b, v []byte) []byte {
	if len(v) == 0 {
		return append(b, "X''"...)
	}
	b = append(b, "0x"...)
	n := len(b)
	b = append(b, make([]byte, hex.EncodedLen(len(v)))...)
	hex.Encode(b[n:], v)
	return b
}

// appendQuoted appends v as a single-quoted string with \0 \' \\ \n \r
// and \Z (0x1a) escaped: no raw newline ever appears inside a statement.
// Runs of plain bytes are copied at once.
func appendQuoted(b, v []byte) []byte {
	b = append(b, '\'')
	start := 0
	for i, c := range v {
		e := escapeByte[c]
		if e == 0 {
			continue
		}
		b = append(b, v[start:i]...)
		b = append(b, '\\', e)
		start = i + 1
	}
	b = append(b, v[start:]...)
	return append(b, '\'')
}

// escapeByte is the letter after the backslash for the bytes a quoted
// string escapes, 0 for the others.
var escapeByte = [256]byte{0: '0', '\'': '\'', '\\': '\\', '\n': 'n', '\r': 'r', 0x1a: 'Z'}

// dataHeader is the session a data file sets before its INSERTs: the
// bytes are exact (NAMES binary), TIMESTAMP values are UTC (the dump reads
// them with time_zone '+00:00'), a 0 in an AUTO_INCREMENT column stays 0,
// and rows of a child table may come before their parent's.
func dataHeader(versioned bool) []byte {
	h := "/*!40101 SET NAMES binary */;\n/*!40103 SET TIME_ZONE='+00:00' */;\n" +
		"/*!40101 SET SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n/*!40014 SET FOREIGN_KEY_CHECKS=0 */;\n"
	if versioned {
		h += "SET @@system_versioning_insert_history=1;\n"
	}
	return []byte(h)
}

// insertPrefix is "INSERT INTO `t` (`c1`,`c2`) VALUES ".
func insertPrefix(table string, cols []column) []byte {
	var sb strings.Builder
	sb.WriteString("INSERT INTO ")
	sb.WriteString(QuoteIdent(table))
	sb.WriteString(" (")
	for i, c := range cols {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(QuoteIdent(c.Name))
	}
	sb.WriteString(") VALUES ")
	return []byte(sb.String())
}

// dataFile builds one data file in memory: a header, then INSERT
// statements of at most stmtSize bytes (a single row larger than that is
// a statement of its own), one per line.
type dataFile struct {
	buf      bytes.Buffer
	prefix   []byte
	stmtSize int
	inStmt   int // bytes of the open statement; 0: none open
	rows     int64
	row      []byte // scratch
}

func newDataFile(header, prefix []byte, stmtSize int) *dataFile {
	d := &dataFile{prefix: prefix, stmtSize: stmtSize}
	d.reset(header)
	return d
}

// reuse makes d the file of another table, keeping its buffer (a worker
// keeps one buffer for all its files).
func (d *dataFile) reuse(header, prefix []byte) {
	d.prefix = prefix
	d.reset(header)
}

func (d *dataFile) reset(header []byte) {
	d.buf.Reset()
	d.buf.Write(header)
	d.inStmt = 0
	d.rows = 0
}

// add appends a row of raw values.
func (d *dataFile) add(cols []column, vals [][]byte) {
	r := append(d.row[:0], '(')
	for i, v := range vals {
		if i > 0 {
			r = append(r, ',')
		}
		r = appendValue(r, cols[i].kind, v)
	}
	r = append(r, ')')
	d.row = r
	if d.inStmt > 0 && d.inStmt+1+len(r)+2 > d.stmtSize {
		d.buf.WriteString(";\n")
		d.inStmt = 0
	}
	if d.inStmt == 0 {
		d.buf.Write(d.prefix)
		d.inStmt = len(d.prefix)
	} else {
		d.buf.WriteByte(',')
		d.inStmt++
	}
	d.buf.Write(r)
	d.inStmt += len(r)
	d.rows++
}

// bytes ends the open statement and returns the file's bytes.
func (d *dataFile) bytes() []byte {
	if d.inStmt > 0 {
		d.buf.WriteString(";\n")
		d.inStmt = 0
	}
	return d.buf.Bytes()
}

func (d *dataFile) size() int { return d.buf.Len() }

// rawValue scans a column as the bytes of its SQL text, NULL apart. The
// driver hands integers and floats over parsed; they are written back as
// their shortest exact text (which reads back to the same value).
type rawValue struct {
	b    []byte
	null bool
}

func (r *rawValue) Scan(src any) error {
	r.null = false
	r.b = r.b[:0]
	switch v := src.(type) {
	case nil:
		r.null = true
	case []byte:
		r.b = append(r.b, v...)
	case string:
		r.b = append(r.b, v...)
	case int64:
		r.b = strconv.AppendInt(r.b, v, 10)
	case uint64:
		r.b = strconv.AppendUint(r.b, v, 10)
	case float32:
		r.b = strconv.AppendFloat(r.b, float64(v), 'g', -1, 32)
	case float64:
		r.b = strconv.AppendFloat(r.b, v, 'g', -1, 64)
	case time.Time: // only in SHOW output (data selects temporal columns as text)
		r.b = v.AppendFormat(r.b, "2006-01-02 15:04:05.999999")
	case bool:
		if v {
			r.b = append(r.b, '1')
		} else {
			r.b = append(r.b, '0')
		}
	default:
		return fmt.Errorf("unexpected column value of type %T", src)
	}
	return nil
}

// value is the bytes, or nil for NULL (an empty string is not nil).
func (r *rawValue) value() []byte {
	if r.null {
		return nil
	}
	if r.b == nil {
		r.b = []byte{}
	}
	return r.b
}

// scanRaw scans the current row into one rawValue per column.
func scanRaw(rows interface{ Scan(...any) error }, vals []rawValue, ptrs []any) error {
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	return rows.Scan(ptrs...)
}
