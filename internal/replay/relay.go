package replay

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
)

const (
	headerSize  = 19
	rotateEvent = 4
	// previousGTIDsEvent is MySQL's PREVIOUS_GTIDS_LOG_EVENT.
	previousGTIDsEvent = 35
	// artificial marks events that are not in the master's binlog.
	artificial = 0x0020
)

// writeRelayLogs turns rebuilt binlog files into relay logs in datadir, the
// way a replica's I/O thread would have written them: each starts with the
// format event, then a rotate event naming the master's file and the
// position the events that follow start at, then those events. The first
// file starts at startPos. It returns the relay log names and writes their
// index.
func writeRelayLogs(datadir string, files []string, startPos uint32) error {
	var idx strings.Builder
	for i, f := range files {
		name := fmt.Sprintf("strata-relay.%06d", i+1)
		from := uint32(0) // 0 = right after the format event
		if i == 0 {
			from = startPos
		}
		if err := writeRelayLog(filepath.Join(datadir, name), f, from); err != nil {
			return err
		}
		fmt.Fprintf(&idx, "./%s\n", name)
	}
	return os.WriteFile(filepath.Join(datadir, "strata-relay.index"), []byte(idx.String()), 0o600)
}

func writeRelayLog(dst, src string, from uint32) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	r := bufio.NewReaderSize(in, 1<<20)
	head := make([]byte, 4+headerSize)
	if _, err := io.ReadFull(r, head); err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	fdeSize := binary.LittleEndian.Uint32(head[4+9:])
	fde := make([]byte, fdeSize)
	copy(fde, head[4:])
	if _, err := io.ReadFull(r, fde[headerSize:]); err != nil {
		return fmt.Errorf("read format event of %s: %w", src, err)
	}
	afterFDE := 4 + fdeSize
	if from < afterFDE {
		from = afterFDE
	}
	// A MySQL binlog's second event is its Previous_gtids: MySQL's applier
	// refuses a relay log whose first GTID comes without one ("logically
	// corrupted"), so a relay log that starts in the middle of the file
	// keeps it, where a replica's own relay log has it, before the rotate.
	var prev []byte
	if from > afterFDE {
		if h, err := r.Peek(headerSize); err == nil && h[4] == previousGTIDsEvent {
			size := binary.LittleEndian.Uint32(h[9:])
			if size < headerSize || afterFDE+size > from {
				return fmt.Errorf("%s: Previous_gtids event of %d bytes at %d overlaps the start %d", src, size, afterFDE, from)
			}
			prev = make([]byte, size)
			if _, err := io.ReadFull(r, prev); err != nil {
				return fmt.Errorf("read Previous_gtids event of %s: %w", src, err)
			}
			afterFDE += size
		}
	}
	if _, err := r.Discard(int(from - afterFDE)); err != nil {
		return fmt.Errorf("skip to %d in %s: %w", from, src, err)
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create relay log: %w", err)
	}
	w := bufio.NewWriterSize(out, 1<<20)
	_, _ = w.Write(head[:4])
	_, _ = w.Write(fde)
	_, _ = w.Write(prev)
	_, _ = w.Write(rotate(filepath.Base(src), from, binary.LittleEndian.Uint32(fde[5:]), hasChecksum(fde)))
	if _, err := io.Copy(w, r); err != nil {
		out.Close()
		return fmt.Errorf("write relay log: %w", err)
	}
	if err := w.Flush(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// hasChecksum says whether the format event (and so every event of the
// file) carries a CRC32: its own last four bytes are then its checksum.
func hasChecksum(fde []byte) bool {
	n := len(fde)
	return n > headerSize+5 && fde[n-5] == 1 && crc32.ChecksumIEEE(fde[:n-4]) == binary.LittleEndian.Uint32(fde[n-4:])
}

// rotate builds the master's rotate event that tells the applier which
// master file and position the following events come from.
func rotate(file string, pos uint32, serverID uint32, checksum bool) []byte {
	size := headerSize + 8 + len(file)
	if checksum {
		size += 4
	}
	ev := make([]byte, size)
	ev[4] = rotateEvent
	binary.LittleEndian.PutUint32(ev[5:], serverID)
	binary.LittleEndian.PutUint32(ev[9:], uint32(size))
	binary.LittleEndian.PutUint16(ev[17:], artificial)
	binary.LittleEndian.PutUint64(ev[headerSize:], uint64(pos))
	copy(ev[headerSize+8:], file)
	if checksum {
		binary.LittleEndian.PutUint32(ev[size-4:], crc32.ChecksumIEEE(ev[:size-4]))
	}
	return ev
}
