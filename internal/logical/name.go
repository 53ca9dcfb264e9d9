package logical

import (
	"errors"
	"fmt"
	"strings"
)

// ErrCorrupt marks a file of a dump whose bytes do not match its Index
// entry, or that does not parse as the format says.
var ErrCorrupt = errors.New("logical dump is corrupt")

// EncodeName encodes a schema or object name for a file name: ASCII
// letters, digits, '_' and '-' stay, every other byte is "%XX" (upper-case
// hex), so any identifier gives a portable name that is unique per
// identifier.
func EncodeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// QuoteIdent quotes a MySQL identifier with backticks.
func QuoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

// QuoteName quotes schema.object.
func QuoteName(schema, object string) string {
	return QuoteIdent(schema) + "." + QuoteIdent(object)
}
