// Package xbstreamtest builds xbstream streams for tests: well-formed ones,
// and hostile ones a checker must refuse.
package xbstreamtest

import (
	"bytes"
	"encoding/binary"
)

// Chunk encodes one xbstream chunk of type typ ('P' payload, 'E' end of
// file, ...) for member path. The checksum is left 0: neither Strata's
// checker nor mbstream -x of an unencrypted stream looks at it.
func Chunk(typ byte, path string, payload []byte) []byte {
	var b bytes.Buffer
	b.WriteString("XBSTCK01")
	b.WriteByte(0)
	b.WriteByte(typ)
	_ = binary.Write(&b, binary.LittleEndian, uint32(len(path)))
	b.WriteString(path)
	if typ == 'E' {
		return b.Bytes()
	}
	_ = binary.Write(&b, binary.LittleEndian, uint64(len(payload)))
	_ = binary.Write(&b, binary.LittleEndian, uint64(0))
	_ = binary.Write(&b, binary.LittleEndian, uint32(0))
	b.Write(payload)
	return b.Bytes()
}

// File encodes member path holding data: one payload chunk and the end
// chunk.
func File(path string, data []byte) []byte {
	return append(Chunk('P', path, data), Chunk('E', path, nil)...)
}
