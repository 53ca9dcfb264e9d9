// Package demo creates deterministic sample data for the demo and the
// end-to-end tests, and computes layout-independent checksums of it, so a
// restored server can be compared with the original.
//
// Seed fills a schema with several InnoDB tables of varied column types
// (INT/BIGINT keys, multilingual utf8mb4 text with emoji, random and
// repetitive BLOBs, DECIMAL(20,6), DATE/DATETIME(6)/TIMESTAMP(6), JSON, ENUM,
// DOUBLE, NULLs, secondary and unique indexes, and a small lookup table).
// The data is generated from fixed math/rand seeds: the same targetBytes
// always produces the same rows and therefore the same Checksums.
package demo

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand"
	"strings"
	"sync"
	"time"
)

// Batching limits for the generated INSERTs. Statements stay well below the
// server's default max_allowed_packet (16 MiB).
const (
	maxStmtBytes   = 2 << 20  // payload bytes per INSERT statement
	maxStmtParams  = 20000    // placeholders per INSERT statement
	maxTxBytes     = 16 << 20 // payload bytes per transaction
	minRowsPerTbl  = 20       // every size-driven table gets at least this many rows
	attachMinBytes = 1 << 10
	attachMaxBytes = 96 << 10
)

// tableDef describes one generated table.
type tableDef struct {
	name string
	ddl  string // CREATE TABLE body after the name
	cols []string
	// share is the fraction of targetBytes this table gets; fixedRows is
	// used instead when share is 0.
	share     float64
	fixedRows int
	// gen returns the values of row number id (1-based) and their
	// approximate payload size in bytes.
	gen func(r *rand.Rand, id int64, p *plan) ([]any, int)
}

// plan holds values shared by the generators that must be known up front
// (both workers run concurrently).
type plan struct {
	customers int64 // estimated number of customers (for orders.customer_id)
	documents int64 // estimated number of documents (for attachments.document_id)
}

// Tables returns the names of the tables Seed creates, in creation order.
func Tables() []string {
	defs := tableDefs()
	names := make([]string, len(defs))
	for i, d := range defs {
		names[i] = d.name
	}
	return names
}

// Seed creates database schema (which must not exist yet) and fills it with
// deterministic pseudo-random data whose payload totals roughly targetBytes
// (the on-disk size is somewhat larger because of indexes and page
// overhead). Rows are written with multi-row INSERTs in batched
// transactions on two connections concurrently. progress, if not nil,
// receives short human-readable status lines; it may be called from
// different goroutines, but never concurrently.
func Seed(ctx context.Context, db *sql.DB, schema string, targetBytes int64, progress func(string)) error {
	if schema == "" {
		return errors.New("demo: empty schema name")
	}
	if targetBytes <= 0 {
		return fmt.Errorf("demo: targetBytes must be positive, got %d", targetBytes)
	}
	var mu sync.Mutex
	report := func(format string, args ...any) {
		if progress == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		progress(fmt.Sprintf(format, args...))
	}
	start := time.Now()

	var exists int
	if err := db.QueryRowContext(ctx,
		"SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", schema).Scan(&exists); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if exists > 0 {
		return fmt.Errorf("demo: database %q already exists", schema)
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+quoteIdent(schema)+
		" CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"); err != nil {
		return fmt.Errorf("demo: creating database: %w", err)
	}

	defs := tableDefs()
	for _, d := range defs {
		if _, err := db.ExecContext(ctx, "CREATE TABLE "+quoteIdent(schema)+"."+quoteIdent(d.name)+" "+d.ddl); err != nil {
			return fmt.Errorf("demo: creating table %s: %w", d.name, err)
		}
	}
	report("created database %s with %d tables; generating ~%s of data", schema, len(defs), formatBytes(targetBytes))

	byName := map[string]tableDef{}
	for _, d := range defs {
		byName[d.name] = d
	}
	p := &plan{
		customers: max64(minRowsPerTbl, int64(byName["customers"].share*float64(targetBytes))/avgCustomerBytes),
		documents: max64(minRowsPerTbl, int64(byName["documents"].share*float64(targetBytes))/avgDocumentBytes),
	}

	// Two workers: the tables with few large rows, and those with many
	// small rows, take roughly the same time.
	groups := [][]tableDef{
		{byName["attachments"], byName["documents"]},
		{byName["countries"], byName["customers"], byName["orders"], byName["events"]},
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(groups))
	totals := make([]int64, len(groups))
	for i, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := seedGroup(ctx, db, schema, g, targetBytes, p, report)
			totals[i] = n
			if err != nil {
				errs[i] = err
				cancel()
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var total int64
	for _, n := range totals {
		total += n
	}
	report("seeded %s: %s of data in %s", schema, formatBytes(total), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// seedGroup fills the tables of one worker on a dedicated connection and
// returns the payload bytes written.
func seedGroup(ctx context.Context, db *sql.DB, schema string, defs []tableDef, targetBytes int64, p *plan,
	report func(string, ...any)) (int64, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("demo: %w", err)
	}
	defer conn.Close()
	// Fixed session settings make the data independent of the caller's
	// DSN: TIMESTAMP values are given in UTC, text is utf8mb4.
	for _, q := range []string{"SET NAMES utf8mb4 COLLATE utf8mb4_general_ci", "SET time_zone = '+00:00'"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return 0, fmt.Errorf("demo: %s: %w", q, err)
		}
	}
	// Best effort: without this, MariaDB writes every INSERT's full text
	// (blobs included) into the binlog as an annotation next to the row
	// events, doubling the binlog size.
	_, _ = conn.ExecContext(ctx, "SET SESSION binlog_annotate_row_events = OFF")
	var total int64
	for _, d := range defs {
		n, err := seedTable(ctx, conn, schema, d, targetBytes, p, report)
		total += n
		if err != nil {
			return total, fmt.Errorf("demo: table %s: %w", d.name, err)
		}
	}
	return total, nil
}

// seedTable generates and inserts the rows of one table.
func seedTable(ctx context.Context, conn *sql.Conn, schema string, d tableDef, targetBytes int64, p *plan,
	report func(string, ...any)) (int64, error) {
	budget := int64(d.share * float64(targetBytes))
	r := rand.New(rand.NewSource(tableSeed(d.name)))
	prefix := "INSERT INTO " + quoteIdent(schema) + "." + quoteIdent(d.name) + " (" + joinIdents(d.cols) + ") VALUES "
	rowPH := "(" + strings.TrimSuffix(strings.Repeat("?,", len(d.cols)), ",") + ")"
	maxRows := maxStmtParams / len(d.cols)

	var (
		tx                   *sql.Tx
		args                 []any
		stmtRows             int
		stmtBytes, txBytes   int64
		rows, total          int64
		nextReport           = budget / 4
		err                  error
		started              = time.Now()
		sqlBuf               strings.Builder
		flush, commit, begin func() error
	)
	begin = func() error {
		tx, err = conn.BeginTx(ctx, nil)
		return err
	}
	flush = func() error {
		if stmtRows == 0 {
			return nil
		}
		sqlBuf.Reset()
		sqlBuf.WriteString(prefix)
		for i := 0; i < stmtRows; i++ {
			if i > 0 {
				sqlBuf.WriteByte(',')
			}
			sqlBuf.WriteString(rowPH)
		}
		if _, err := tx.ExecContext(ctx, sqlBuf.String(), args...); err != nil {
			return err
		}
		args, stmtRows, stmtBytes = args[:0], 0, 0
		return nil
	}
	commit = func() error {
		if err := flush(); err != nil {
			return err
		}
		txBytes = 0
		return tx.Commit()
	}
	if err := begin(); err != nil {
		return 0, err
	}
	defer func() {
		if tx != nil {
			_ = tx.Rollback() // no-op after a successful Commit
		}
	}()

	for id := int64(1); ; id++ {
		if d.share > 0 {
			if total >= budget && rows >= minRowsPerTbl {
				break
			}
		} else if rows >= int64(d.fixedRows) {
			break
		}
		row, size := d.gen(r, id, p)
		args = append(args, row...)
		stmtRows++
		rows++
		stmtBytes += int64(size)
		txBytes += int64(size)
		total += int64(size)
		if stmtRows >= maxRows || stmtBytes >= maxStmtBytes {
			if err := flush(); err != nil {
				return total, err
			}
		}
		if txBytes >= maxTxBytes {
			if err := commit(); err != nil {
				return total, err
			}
			if err := begin(); err != nil {
				return total, err
			}
		}
		if budget > 1<<20 && total >= nextReport && total < budget {
			report("  %s: %d rows, %s (%d%%)", d.name, rows, formatBytes(total), total*100/budget)
			nextReport += budget / 4
		}
	}
	if err := commit(); err != nil {
		return total, err
	}
	report("  %s: done, %d rows, %s in %s", d.name, rows, formatBytes(total), time.Since(started).Round(10*time.Millisecond))
	return total, nil
}

// tableSeed derives a fixed math/rand seed from a table name.
func tableSeed(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("strata-demo/" + name))
	return int64(h.Sum64() & (1<<63 - 1))
}

// quoteIdent quotes a MariaDB identifier with backticks.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

func joinIdents(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quoteIdent(c)
	}
	return strings.Join(q, ",")
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// ---- table definitions and row generators ----

// Approximate average payload sizes, used to plan cross-table references.
const (
	avgCustomerBytes = 330
	avgDocumentBytes = 4300
)

var (
	baseTime = time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)
	// TIMESTAMP range is limited (1970..2038); events use 2020..2025.
	eventBase = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
)

func tableDefs() []tableDef {
	return []tableDef{
		{
			name: "countries",
			ddl: `(
  code CHAR(2) NOT NULL PRIMARY KEY,
  name VARCHAR(64) NOT NULL,
  native_name VARCHAR(64) NOT NULL,
  continent ENUM('Africa','Asia','Europe','North America','Oceania','South America') NOT NULL,
  population BIGINT UNSIGNED NULL,
  gdp_per_capita DECIMAL(20,6) NULL
) ENGINE=InnoDB`,
			cols:      []string{"code", "name", "native_name", "continent", "population", "gdp_per_capita"},
			fixedRows: len(countries),
			gen: func(r *rand.Rand, id int64, _ *plan) ([]any, int) {
				c := countries[id-1]
				var pop, gdp any
				if id%7 != 0 { // a few NULLs
					pop = 1_000_000 + r.Int63n(1_400_000_000)
					gdp = decimal(r, 150_000)
				}
				return []any{c.code, c.name, c.native, c.continent, pop, gdp}, 2 + len(c.name) + len(c.native) + 30
			},
		},
		{
			name: "customers",
			ddl: `(
  id INT UNSIGNED NOT NULL PRIMARY KEY,
  email VARCHAR(191) NOT NULL,
  full_name VARCHAR(200) NOT NULL,
  country CHAR(2) NOT NULL,
  status ENUM('active','suspended','closed') NOT NULL DEFAULT 'active',
  balance DECIMAL(20,6) NOT NULL,
  birthday DATE NULL,
  created_at DATETIME(6) NOT NULL,
  updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  profile JSON NULL,
  UNIQUE KEY uk_email (email),
  KEY idx_country_created (country, created_at)
) ENGINE=InnoDB`,
			cols:  []string{"id", "email", "full_name", "country", "status", "balance", "birthday", "created_at", "updated_at", "profile"},
			share: 0.06,
			gen:   genCustomer,
		},
		{
			name: "orders",
			ddl: `(
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  customer_id INT UNSIGNED NOT NULL,
  status ENUM('new','paid','shipped','cancelled','refunded') NOT NULL,
  currency CHAR(3) NOT NULL,
  amount DECIMAL(20,6) NOT NULL,
  tax DECIMAL(20,6) NULL,
  quantity SMALLINT NOT NULL,
  ordered_at DATETIME(6) NOT NULL,
  shipped_on DATE NULL,
  note VARCHAR(255) NULL,
  KEY idx_customer_ordered (customer_id, ordered_at),
  KEY idx_status (status)
) ENGINE=InnoDB`,
			cols:  []string{"id", "customer_id", "status", "currency", "amount", "tax", "quantity", "ordered_at", "shipped_on", "note"},
			share: 0.10,
			gen:   genOrder,
		},
		{
			name: "documents",
			ddl: `(
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  lang VARCHAR(8) NOT NULL,
  title VARCHAR(255) NOT NULL,
  body MEDIUMTEXT NOT NULL,
  tags JSON NULL,
  revision INT NOT NULL,
  created_at DATETIME(6) NOT NULL,
  KEY idx_lang (lang)
) ENGINE=InnoDB`,
			cols:  []string{"id", "lang", "title", "body", "tags", "revision", "created_at"},
			share: 0.18,
			gen:   genDocument,
		},
		{
			name: "attachments",
			ddl: `(
  id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
  document_id BIGINT UNSIGNED NULL,
  kind ENUM('random','repetitive') NOT NULL,
  mime VARCHAR(64) NOT NULL,
  size INT UNSIGNED NOT NULL,
  sha256 BINARY(32) NOT NULL,
  data MEDIUMBLOB NOT NULL,
  thumb BLOB NULL
) ENGINE=InnoDB`,
			cols:  []string{"id", "document_id", "kind", "mime", "size", "sha256", "data", "thumb"},
			share: 0.60,
			gen:   genAttachment,
		},
		{
			name: "events",
			ddl: `(
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
  ts TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  level ENUM('debug','info','warn','error') NOT NULL,
  source VARCHAR(64) NOT NULL,
  message TEXT NOT NULL,
  latency DOUBLE NULL,
  payload JSON NULL
) ENGINE=InnoDB`,
			cols:  []string{"id", "ts", "level", "source", "message", "latency", "payload"},
			share: 0.06,
			gen:   genEvent,
		},
	}
}

type country struct{ code, name, native, continent string }

var countries = []country{
	{"AR", "Argentina", "Argentina", "South America"},
	{"AU", "Australia", "Australia", "Oceania"},
	{"BR", "Brazil", "Brasil", "South America"},
	{"CN", "China", "中国", "Asia"},
	{"DE", "Germany", "Deutschland", "Europe"},
	{"EG", "Egypt", "مصر", "Africa"},
	{"ES", "Spain", "España", "Europe"},
	{"FR", "France", "France", "Europe"},
	{"GR", "Greece", "Ελλάδα", "Europe"},
	{"IL", "Israel", "ישראל", "Asia"},
	{"IN", "India", "भारत", "Asia"},
	{"IS", "Iceland", "Ísland", "Europe"},
	{"JP", "Japan", "日本", "Asia"},
	{"KR", "South Korea", "대한민국", "Asia"},
	{"MX", "Mexico", "México", "North America"},
	{"NG", "Nigeria", "Nigeria", "Africa"},
	{"NZ", "New Zealand", "Aotearoa", "Oceania"},
	{"PL", "Poland", "Polska", "Europe"},
	{"RU", "Russia", "Россия", "Europe"},
	{"SE", "Sweden", "Sverige", "Europe"},
	{"TH", "Thailand", "ประเทศไทย", "Asia"},
	{"TR", "Türkiye", "Türkiye", "Asia"},
	{"US", "United States", "United States", "North America"},
	{"VN", "Vietnam", "Việt Nam", "Asia"},
}

var firstNames = []string{
	"Alice", "José", "Zoë", "Björn", "Søren", "Łukasz", "François", "Ömer", "Иван", "Ольга",
	"Δημήτρης", "太郎", "美咲", "민준", "محمد", "דוד", "अर्जुन", "สมชาย", "Nguyễn", "Siobhán",
	"Chloé", "Jürgen", "Ngozi", "Aroha", "Wei", "Ana María",
}

var lastNames = []string{
	"Smith", "García", "Müller", "Øvergaard", "Kowalczyk", "Dubois", "Yılmaz", "Иванов", "Παπαδόπουλος",
	"山田", "佐藤", "김", "الفارسي", "כהן", "शर्मा", "ใจดี", "Trần", "O'Brien", "van der Berg", "Okafor",
}

var emoji = []string{"😀", "🚀", "🎉", "👍🏽", "🇩🇪", "👨‍👩‍👧", "❤️", "🐘", "🍣", "🌍", "✅", "🔥", "💾", "🧪", "𝄞"}

var sentences = []string{
	"The quick brown fox jumps over the lazy dog.",
	"Backups are only as good as the last successful restore.",
	"Falsches Üben von Xylophonmusik quält jeden größeren Zwerg.",
	"Portez ce vieux whisky au juge blond qui fume.",
	"El veloz murciélago hindú comía feliz cardillo y kiwi.",
	"Съешь же ещё этих мягких французских булок, да выпей чаю.",
	"Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",
	"いろはにほへと ちりぬるを わかよたれそ つねならむ",
	"天地玄黄，宇宙洪荒。日月盈昃，辰宿列张。",
	"키스의 고유조건은 입술끼리 만나야 하고 특별한 기술은 필요치 않다.",
	"نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر ومغلف بجلد أزرق.",
	"דג סקרן שט בים מאוכזב ולפתע מצא חברה.",
	"ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम।",
	"เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน",
	"Tiếng Việt có dấu: Đường đi khó không vì ngăn sông cách núi.",
	"Pchnąć w tę łódź jeża lub ośm skrzyń fig.",
	"Pijamalı hasta yağız şoföre çabucak güvendi.",
	"Every transaction is written to the binary log before it commits.",
}

var langs = []string{"en", "de", "fr", "es", "ru", "el", "ja", "zh", "ko", "ar", "he", "hi", "th", "vi", "pl", "tr"}

var currencies = []string{"EUR", "USD", "GBP", "JPY", "CHF", "SEK", "BRL", "INR"}

var mimes = []string{"application/octet-stream", "image/png", "application/pdf", "text/plain", "application/zip"}

var sources = []string{"api", "worker", "scheduler", "billing", "auth", "search", "mailer"}

// decimal returns a DECIMAL(20,6) literal with an integer part below maxInt.
func decimal(r *rand.Rand, maxInt int64) string {
	i := r.Int63n(maxInt)
	f := r.Int63n(1_000_000)
	return fmt.Sprintf("%d.%06d", i, f)
}

// datetime6 formats a random DATETIME(6) within years after base.
func datetime6(r *rand.Rand, base time.Time, years int) string {
	t := base.Add(time.Duration(r.Int63n(int64(years)*365*24*3600)) * time.Second).
		Add(time.Duration(r.Intn(1_000_000)) * time.Microsecond)
	return t.Format("2006-01-02 15:04:05.000000")
}

func sentence(r *rand.Rand) string { return sentences[r.Intn(len(sentences))] }

func pick(r *rand.Rand, s []string) string { return s[r.Intn(len(s))] }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func genCustomer(r *rand.Rand, id int64, _ *plan) ([]any, int) {
	name := pick(r, firstNames) + " " + pick(r, lastNames)
	if r.Intn(10) == 0 {
		name += " " + pick(r, emoji)
	}
	email := fmt.Sprintf("customer%07d@example.com", id)
	c := countries[r.Intn(len(countries))].code
	status := []string{"active", "active", "active", "suspended", "closed"}[r.Intn(5)]
	balance := decimal(r, 10_000_000)
	if r.Intn(4) == 0 {
		balance = "-" + balance
	}
	if r.Intn(200) == 0 {
		balance = "99999999999999.999999" // the largest DECIMAL(20,6)
	}
	var birthday any
	if r.Intn(5) != 0 {
		birthday = time.Date(1940+r.Intn(65), time.Month(1+r.Intn(12)), 1+r.Intn(28), 0, 0, 0, 0, time.UTC).Format("2006-01-02")
	}
	created := datetime6(r, baseTime, 5)
	updated := datetime6(r, eventBase, 5)
	var profile any
	size := len(name) + len(email) + 2 + 10 + 12 + 3 + 26 + 26
	if r.Intn(4) != 0 {
		p := map[string]any{
			"newsletter": r.Intn(2) == 0,
			"score":      r.Intn(1000),
			"langs":      []string{pick(r, langs), pick(r, langs)},
			"bio":        sentence(r),
			"address": map[string]any{
				"street": fmt.Sprintf("%d %s", 1+r.Intn(999), pick(r, lastNames)),
				"zip":    fmt.Sprintf("%05d", r.Intn(100000)),
			},
		}
		if r.Intn(3) == 0 {
			p["nickname"] = pick(r, firstNames) + pick(r, emoji)
		}
		if r.Intn(5) == 0 {
			p["notes"] = nil
		}
		s := mustJSON(p)
		profile = s
		size += len(s)
	}
	return []any{id, email, name, c, status, balance, birthday, created, updated, profile}, size
}

func genOrder(r *rand.Rand, id int64, p *plan) ([]any, int) {
	status := []string{"new", "paid", "paid", "shipped", "shipped", "shipped", "cancelled", "refunded"}[r.Intn(8)]
	amount := decimal(r, 100_000)
	var tax, shipped, note any
	if r.Intn(3) != 0 {
		tax = decimal(r, 20_000)
	}
	ordered := datetime6(r, baseTime, 10)
	if status == "shipped" {
		t, _ := time.Parse("2006-01-02 15:04:05.000000", ordered)
		shipped = t.AddDate(0, 0, 1+r.Intn(14)).Format("2006-01-02")
	}
	size := 8 + 4 + 8 + 3 + 12 + 12 + 2 + 26 + 10
	if r.Intn(4) == 0 {
		n := sentence(r)
		if r.Intn(3) == 0 {
			n += " " + pick(r, emoji)
		}
		note = n
		size += len(n)
	}
	return []any{id, 1 + r.Int63n(p.customers), status, pick(r, currencies), amount, tax,
		1 + r.Intn(20), ordered, shipped, note}, size
}

func genDocument(r *rand.Rand, id int64, _ *plan) ([]any, int) {
	lang := pick(r, langs)
	title := fmt.Sprintf("Document %d: %s", id, sentence(r))
	// Bodies of 300 B .. ~8 KiB made of repeated sentences: text that
	// compresses well, with emoji sprinkled in.
	want := 300 + r.Intn(8000)
	var b strings.Builder
	b.Grow(want + 200)
	for b.Len() < want {
		b.WriteString(sentence(r))
		if r.Intn(8) == 0 {
			b.WriteString(" " + pick(r, emoji))
		}
		if r.Intn(6) == 0 {
			b.WriteString("\n\n")
		} else {
			b.WriteByte(' ')
		}
	}
	var tags any
	size := len(lang) + len(title) + b.Len() + 4 + 26
	if r.Intn(5) != 0 {
		t := make([]string, 1+r.Intn(4))
		for i := range t {
			t[i] = pick(r, []string{"draft", "final", "legal", "ops", "テスト", "важно", "🔥hot", "archive"})
		}
		s := mustJSON(map[string]any{"tags": t, "pinned": r.Intn(10) == 0, "views": r.Intn(100000)})
		tags = s
		size += len(s)
	}
	return []any{id, lang, title, b.String(), tags, 1 + r.Intn(50), datetime6(r, baseTime, 10)}, size
}

func genAttachment(r *rand.Rand, id int64, p *plan) ([]any, int) {
	n := attachMinBytes + r.Intn(attachMaxBytes-attachMinBytes)
	data := make([]byte, n)
	kind := "random"
	if id%2 == 0 {
		// Repetitive, highly compressible content: a short random chunk
		// repeated.
		kind = "repetitive"
		chunk := make([]byte, 16+r.Intn(240))
		r.Read(chunk)
		for i := 0; i < n; i += len(chunk) {
			copy(data[i:], chunk)
		}
	} else {
		r.Read(data) // incompressible
	}
	sum := sha256.Sum256(data)
	var docID, thumb any
	if r.Intn(5) != 0 {
		docID = 1 + r.Int63n(p.documents)
	}
	size := n + 32 + 20
	if r.Intn(3) != 0 {
		t := make([]byte, r.Intn(2048))
		r.Read(t)
		thumb = t
		size += len(t)
	}
	return []any{id, docID, kind, pick(r, mimes), n, sum[:], data, thumb}, size
}

func genEvent(r *rand.Rand, id int64, _ *plan) ([]any, int) {
	level := []string{"debug", "info", "info", "info", "warn", "error"}[r.Intn(6)]
	src := pick(r, sources)
	msg := fmt.Sprintf("%s: %s", src, sentence(r))
	var latency, payload any
	size := 8 + 26 + 5 + len(src) + len(msg)
	if r.Intn(5) != 0 {
		latency = r.ExpFloat64() * 120
		size += 8
	}
	if r.Intn(2) == 0 {
		s := mustJSON(map[string]any{
			"request_id": fmt.Sprintf("%016x", r.Uint64()),
			"status":     []int{200, 201, 204, 400, 404, 500}[r.Intn(6)],
			"bytes":      r.Intn(1 << 20),
			"user":       pick(r, firstNames),
		})
		payload = s
		size += len(s)
	}
	return []any{id, datetime6(r, eventBase, 5), level, src, msg, latency, payload}, size
}
