// Package auth keeps mailvault's accounts (domains, users, aliases, roles,
// app passwords) and guards logins against brute force.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id cost parameters (RFC 9106 section 3.1).
type Params struct {
	Time    uint32 // passes
	Memory  uint32 // KiB
	Threads uint8
	KeyLen  uint32
}

// DefaultParams returns the cost used for new hashes: 64 MiB, 3 passes,
// 2 lanes — RFC 9106 section 4's second recommended option, with
// parallelism reduced for small servers.
func DefaultParams() Params {
	return Params{Time: 3, Memory: 64 * 1024, Threads: 2, KeyLen: 32}
}

// MaxMemory is the largest memory cost (KiB, 4 GiB) CheckPassword
// accepts in a stored hash, and so the largest a new hash may have.
const MaxMemory = 4 * 1024 * 1024

// CheckMinimum refuses a cost for new hashes below OWASP's Password
// Storage Cheat Sheet minimums for argon2id: at least 46 MiB with one
// pass, or at least 19 MiB with two or more (the sheet's cheaper
// alternatives trade more passes for less memory; below 19 MiB GPU
// attacks gain too much). Hashes already stored are checked whatever
// their cost: each PHC string carries its own parameters.
func (p Params) CheckMinimum() error {
	const mib = 1024
	switch {
	case p.Threads == 0:
		return errors.New("argon2id threads must be at least 1")
	case p.Memory > MaxMemory:
		return fmt.Errorf("argon2id memory %d MiB is above the %d MiB a stored hash may have", p.Memory/mib, MaxMemory/mib)
	case p.Time >= 2 && p.Memory >= 19*mib, p.Time >= 1 && p.Memory >= 46*mib:
		return nil
	}
	return fmt.Errorf("argon2id cost m=%d KiB t=%d is below OWASP's minimum (m=19 MiB with t>=2, or m=46 MiB with t>=1)", p.Memory, p.Time)
}

var b64 = base64.RawStdEncoding

// HashPassword returns a PHC-format argon2id hash:
// $argon2id$v=19$m=65536,t=3,p=2$<salt>$<key>.
func HashPassword(p Params, password string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("auth: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// dummyHash is what Authenticate checks for an unknown user, so that
// the answer takes as long as for a known one: an argon2id hash with the
// cost p whose key no password derives (all zero: finding a password for
// it means inverting argon2id). It used to be a real hash of a fixed
// password computed at Open, which allocated p.Memory (64 MiB) at every
// start of the server or an account command for nothing.
func dummyHash(p Params) string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString([]byte("mailvault dummy.")), b64.EncodeToString(make([]byte, max(p.KeyLen, 16))))
}

var errBadHash = errors.New("auth: malformed password hash")

// CheckPassword reports whether password matches an encoded argon2id hash,
// comparing in constant time.
func CheckPassword(encoded, password string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errBadHash
	}
	var p Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil || p.Time == 0 || p.Threads == 0 || p.Memory > MaxMemory {
		return false, errBadHash
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, errBadHash
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// App passwords are random 128-bit secrets made by the server, so a fast
// hash suffices (no dictionary to guess from) and keeps login time
// independent of how many app passwords a user has.
func newAppSecret() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: random: %w", err)
	}
	s := strings.ToLower(base32NoPad(b))
	// Groups of 4 for readability: xxxx-xxxx-…
	var out []string
	for len(s) > 4 {
		out = append(out, s[:4])
		s = s[4:]
	}
	return strings.Join(append(out, s), "-"), nil
}

func hashAppSecret(secret string) string {
	sum := sha256.Sum256([]byte(strings.ReplaceAll(strings.ToLower(secret), "-", "")))
	return "sha256:" + b64.EncodeToString(sum[:])
}

func checkAppSecret(hash, secret string) bool {
	return subtle.ConstantTimeCompare([]byte(hash), []byte(hashAppSecret(secret))) == 1
}

func base32NoPad(b []byte) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var sb strings.Builder
	var acc uint32
	bits := 0
	for _, c := range b {
		acc = acc<<8 | uint32(c)
		bits += 8
		for bits >= 5 {
			sb.WriteByte(alphabet[(acc>>(bits-5))&31])
			bits -= 5
		}
	}
	if bits > 0 {
		sb.WriteByte(alphabet[(acc<<(5-bits))&31])
	}
	return sb.String()
}
