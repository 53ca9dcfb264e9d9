package manifest

// AuthBytes returns the canonical encoding of m that its MAC covers: Encode
// of a copy of m with the MAC field empty. A reader recomputes it from the
// decoded manifest, so every field this version of Strata knows is
// covered; a field added later must come with a new FormatVersion.
func (m *Manifest) AuthBytes() ([]byte, error) {
	c := *m
	c.MAC = ""
	return Encode(&c)
}
