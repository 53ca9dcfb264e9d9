// Package binlog archives a server's binary log as a replica would: it
// streams raw events and writes them to the repository as small immutable,
// compressed, checksummed segments with an index, and rebuilds binlog files
// from the archive for point-in-time recovery.
//
// Segments of one binlog file, concatenated in order after the 4-byte magic,
// are that file byte for byte: replay tools read them as they are.
package binlog

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/strata-backup/strata/internal/gtid"
)

// Binlog event types Strata looks at (see MariaDB/MySQL log_event.h).
const (
	evQuery         = 2
	evStop          = 3
	evRotate        = 4
	evFormatDesc    = 15
	evXID           = 16
	evHeartbeat     = 27
	evMySQLGTID     = 33
	evMySQLAnonGTID = 34
	evPrevGTIDs     = 35 // MySQL: the server's executed set before the file
	evXAPrepare     = 38 // MySQL: XA PREPARE ends the prepared part of an XA transaction
	evTxnPayload    = 40 // MySQL: a whole compressed transaction (binlog_transaction_compression)
	evHeartbeatV2   = 41
	evMySQLGTIDTag  = 42 // MySQL 8.4+: a GTID with a tag (uuid:tag:N)
	evMariaGTID     = 162
	evMariaGTIDList = 163

	headerSize = 19
	// flagArtificial marks events the server makes up for the dump stream.
	flagArtificial = 0x0020
)

// Magic is the first 4 bytes of every binlog file.
var Magic = []byte{0xfe, 'b', 'i', 'n'}

// header is the common 19-byte event header.
type header struct {
	Timestamp uint32
	Type      byte
	ServerID  uint32
	Size      uint32
	LogPos    uint32 // end position of the event in its file
	Flags     uint16
}

func parseHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, fmt.Errorf("event of %d bytes is shorter than a header", len(b))
	}
	h := header{
		Timestamp: binary.LittleEndian.Uint32(b[0:]),
		Type:      b[4],
		ServerID:  binary.LittleEndian.Uint32(b[5:]),
		Size:      binary.LittleEndian.Uint32(b[9:]),
		LogPos:    binary.LittleEndian.Uint32(b[13:]),
		Flags:     binary.LittleEndian.Uint16(b[17:]),
	}
	if int(h.Size) != len(b) {
		return h, fmt.Errorf("event size %d in header, %d bytes received", h.Size, len(b))
	}
	return h, nil
}

// start is the event's start position in its file.
func (h header) start() uint32 { return h.LogPos - h.Size }

// gtidOf returns the GTID a GTID event starts ("domain-server-seq" for
// MariaDB, "uuid:gno" for MySQL), or "".
func gtidOf(h header, b []byte) string {
	body := b[headerSize:]
	switch h.Type {
	case evMariaGTID:
		if len(body) < 12 {
			return ""
		}
		seq := binary.LittleEndian.Uint64(body[0:])
		domain := binary.LittleEndian.Uint32(body[8:])
		return fmt.Sprintf("%d-%d-%d", domain, h.ServerID, seq)
	case evMySQLGTID:
		if len(body) < 25 {
			return ""
		}
		sid := hex.EncodeToString(body[1:17])
		gno := binary.LittleEndian.Uint64(body[17:])
		return fmt.Sprintf("%s-%s-%s-%s-%s:%d", sid[0:8], sid[8:12], sid[12:16], sid[16:20], sid[20:32], gno)
	case evMySQLGTIDTag:
		var e replication.GtidTaggedLogEvent
		if e.Decode(body) != nil {
			return ""
		}
		g, err := e.GTIDNext()
		if err != nil {
			return ""
		}
		return g.String()
	}
	return ""
}

// isGTIDEvent says whether the event starts a transaction.
func isGTIDEvent(t byte) bool {
	return t == evMariaGTID || t == evMySQLGTID || t == evMySQLAnonGTID || t == evMySQLGTIDTag
}

// previousGTIDs returns the executed GTID set a MySQL Previous_gtids event
// holds: the server's gtid_executed before the file it starts. checksum
// says whether the event ends with a CRC32.
func previousGTIDs(ev []byte, checksum bool) (string, error) {
	body := ev[headerSize:]
	if checksum {
		if len(body) < 4 {
			return "", fmt.Errorf("a Previous_gtids event of %d bytes is too short", len(ev))
		}
		body = body[:len(body)-4]
	}
	var e replication.PreviousGTIDsEvent
	if err := e.Decode(body); err != nil {
		return "", fmt.Errorf("decode the Previous_gtids event: %w", err)
	}
	return e.GTIDSets, nil
}

// eventTime converts an event timestamp.
func eventTime(ts uint32) time.Time { return time.Unix(int64(ts), 0).UTC() }

// nextFile returns the binlog file name that follows name
// (binlog.000041 → binlog.000042), or "" if name has no numeric suffix.
func nextFile(name string) string {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return ""
	}
	n, err := strconv.ParseUint(name[i+1:], 10, 64)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s.%0*d", name[:i], len(name)-i-1, n+1)
}

// GTID is a parsed MariaDB GTID (domain-server-seq): gtid.MariaGTID.
type GTID = gtid.MariaGTID

// ParseMariaGTID parses "domain-server-seq" (gtid.ParseMariaGTID).
func ParseMariaGTID(s string) (GTID, error) { return gtid.ParseMariaGTID(s) }

// DomainSeqs parses a MariaDB GTID position ("0-1-10,1-2-5") into the
// highest sequence number per domain.
func DomainSeqs(set string) (map[uint32]uint64, error) {
	out := map[uint32]uint64{}
	for _, p := range strings.Split(set, ",") {
		if strings.TrimSpace(p) == "" {
			continue
		}
		g, err := ParseMariaGTID(p)
		if err != nil {
			return nil, err
		}
		if g.Seq > out[g.Domain] {
			out[g.Domain] = g.Seq
		}
	}
	return out, nil
}
