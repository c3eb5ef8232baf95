package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// ID names a blob (a keyed BLAKE3 hash of its plaintext) or a repository
// file (the SHA-256 of its encrypted bytes, so storage corruption of a file
// is visible from its name alone).
type ID [32]byte

// String returns the ID in lower-case hex, as used in file names and JSON.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short returns the first 8 hex digits, for display.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsNull reports whether the ID is all zeroes (unset).
func (id ID) IsNull() bool { return id == ID{} }

// MarshalText implements encoding.TextMarshaler.
// One allocation, not String's two: a backup encodes a few IDs per
// message into folder trees and index files.
func (id ID) MarshalText() ([]byte, error) {
	b := make([]byte, hex.EncodedLen(len(id)))
	hex.Encode(b, id[:])
	return b, nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *ID) UnmarshalText(b []byte) error {
	p, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// ParseID parses a 64-digit hex ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("invalid ID %q: want %d hex digits", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("invalid ID %q: %w", s, err)
	}
	return id, nil
}

// fileID is the name of a repository file: SHA-256 of its stored bytes.
func fileID(data []byte) ID { return sha256.Sum256(data) }
