package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/strata-backup/strata/internal/binlog"
)

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 7: "7", 999: "999", 1000: "1,000", 1234567: "1,234,567", -45678: "-45,678", 100000: "100,000"} {
		assert.Equal(t, want, thousands(n), n)
	}
}

// TestBillLine: the status lines of a bill name every kind (other only
// when there is any), the last hour's writes and the average's span.
func TestBillLine(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	b := binlog.NewBill("db1", &binlog.Index{}, nil, now)
	b.Objects[binlog.BillRecords], b.Objects[binlog.BillRollups], b.Objects[binlog.BillData], b.Objects[binlog.BillKeys] = 800, 152, 600, 3
	b.TotalObjects, b.TotalBytes = 1555, 59454259
	b.WritesLastHour, b.WritesPerHour, b.AvgHours, b.AvgSince = 3602, 3579.6, 24, now.Add(-24*time.Hour)
	storage, writes := billLine(b)
	assert.Equal(t, "1,555 objects, 56.7MiB (records 800, roll-ups 152, data 600, packs 0, gaps 0, keys 3)", storage)
	assert.Equal(t, "3,602 in the last hour, 3,580/h over 24 h", writes)

	b.Objects[binlog.BillOther] = 2
	b.AvgHours, b.AvgSince = 1, now.Add(-10*time.Minute)
	storage, writes = billLine(b)
	assert.Contains(t, storage, "keys 3, other 2)")
	assert.Equal(t, "3,602 in the last hour, 3,580/h (the archive is younger than an hour: since 2026-03-01T11:50:00Z)", writes)

	b.AvgHours, b.AvgSince = 5.5, now.Add(-330*time.Minute)
	_, writes = billLine(b)
	assert.Equal(t, "3,602 in the last hour, 3,580/h over 5.5 h (since 2026-03-01T06:30:00Z)", writes)

	_, writes = billLine(binlog.NewBill("db1", &binlog.Index{}, nil, now))
	assert.Equal(t, "0 in the last hour, 0/h (nothing written)", writes)
}
