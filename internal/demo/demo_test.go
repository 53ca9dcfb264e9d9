package demo_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/testdb"
)

func TestSeedAndChecksums(t *testing.T) {
	t.Run("mariadb", func(t *testing.T) { testSeedAndChecksums(t, flavor.MariaDB) })
	t.Run("mysql", func(t *testing.T) { testSeedAndChecksums(t, flavor.MySQL) })
}

func testSeedAndChecksums(t *testing.T, fl flavor.Name) {
	s := testdb.ForTest(t, testdb.Options{Flavor: fl})
	db, err := s.DB("")
	require.NoError(t, err)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const target = 2 << 20
	var msgs []string
	require.NoError(t, demo.Seed(ctx, db, "shop", target, func(m string) { msgs = append(msgs, m) }))
	require.NotEmpty(t, msgs)
	t.Logf("progress:\n%v", msgs)

	// All tables exist and have rows; payload is roughly the target.
	sums, err := demo.Checksums(ctx, db, "shop")
	require.NoError(t, err)
	require.Len(t, sums, len(demo.Tables()))
	for _, name := range demo.Tables() {
		require.Contains(t, sums, name)
		require.NotContains(t, sums[name], "rows=0 ")
	}
	var dataBytes int64
	require.NoError(t, db.QueryRowContext(ctx,
		"SELECT SUM(LENGTH(data)) + (SELECT SUM(LENGTH(body)) FROM shop.documents) FROM shop.attachments").Scan(&dataBytes))
	require.Greater(t, dataBytes, int64(target/2))
	require.Less(t, dataBytes, int64(target*2))

	// Content checks: multilingual text, emoji, JSON, NULLs, blob hashes.
	var n int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM shop.countries WHERE native_name = '日本'").Scan(&n))
	require.Equal(t, 1, n)
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM shop.documents WHERE body LIKE '%🚀%'").Scan(&n))
	require.Positive(t, n)
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM shop.customers WHERE profile IS NOT NULL AND NOT JSON_VALID(profile)").Scan(&n))
	require.Zero(t, n)
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM shop.customers WHERE birthday IS NULL").Scan(&n))
	require.Positive(t, n)
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM shop.attachments WHERE sha256 <> UNHEX(SHA2(data, 256))").Scan(&n))
	require.Zero(t, n)
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(DISTINCT kind) FROM shop.attachments").Scan(&n))
	require.Equal(t, 2, n)

	// Stable across calls.
	sums2, err := demo.Checksums(ctx, db, "shop")
	require.NoError(t, err)
	require.Equal(t, sums, sums2)
	require.Empty(t, demo.CompareChecksums(sums, sums2))

	// Deterministic: seeding another schema with the same size gives the
	// same content.
	require.NoError(t, demo.Seed(ctx, db, "shop2", target, nil))
	sums3, err := demo.Checksums(ctx, db, "shop2")
	require.NoError(t, err)
	require.Empty(t, demo.CompareChecksums(sums, sums3))

	// Seeding an existing schema is refused.
	require.Error(t, demo.Seed(ctx, db, "shop", target, nil))

	// A modified row changes that table's checksum, and only that one.
	_, err = db.ExecContext(ctx, "UPDATE shop.orders SET amount = amount + 0.000001 WHERE id = 3")
	require.NoError(t, err)
	sums4, err := demo.Checksums(ctx, db, "shop")
	require.NoError(t, err)
	diffs := demo.CompareChecksums(sums, sums4)
	require.Len(t, diffs, 1)
	require.Contains(t, diffs[0], "orders")

	// A deleted row changes the row count.
	_, err = db.ExecContext(ctx, "DELETE FROM shop.events WHERE id = 1")
	require.NoError(t, err)
	sums5, err := demo.Checksums(ctx, db, "shop")
	require.NoError(t, err)
	diffs = demo.CompareChecksums(sums, sums5)
	require.Len(t, diffs, 2)
	require.Contains(t, diffs[0], "events")
	require.Contains(t, diffs[0], "rows=")
}

func TestCompareChecksums(t *testing.T) {
	a := map[string]string{"t1": "rows=1 checksum=5", "t2": "rows=2 checksum=6", "t3": "rows=0 checksum=0"}
	b := map[string]string{"t1": "rows=1 checksum=5", "t2": "rows=2 checksum=7", "t4": "rows=1 checksum=1"}
	require.Empty(t, demo.CompareChecksums(a, a))
	require.Empty(t, demo.CompareChecksums(nil, map[string]string{}))
	diffs := demo.CompareChecksums(a, b)
	require.Equal(t, []string{
		"table t2: first has rows=2 checksum=6, second has rows=2 checksum=7",
		"table t3: missing in second (first has rows=0 checksum=0)",
		"table t4: missing in first (second has rows=1 checksum=1)",
	}, diffs)
}
