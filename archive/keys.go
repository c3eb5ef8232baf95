package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"filippo.io/age"
	"github.com/restic/chunker"
)

// ErrWrongKey means none of the given passphrases or identities opens any
// key file of the repository.
var ErrWrongKey = errors.New("wrong password or identity: no key file could be decrypted")

// ErrWriteOnly is returned (wrapped) by everything that would decrypt mail
// content, trees or snapshots through a write-only key. It also matches
// ErrWrongKey under errors.Is, so the CLI gives it the same exit code (12):
// the key that was given cannot do what was asked.
var ErrWriteOnly error = writeOnlyError{}

type writeOnlyError struct{}

func (writeOnlyError) Error() string {
	return "this is a write-only key: it can add backups but cannot decrypt mail, folder lists or snapshots (use a full key)"
}

func (writeOnlyError) Is(target error) bool { return target == ErrWrongKey }

// scryptWorkFactor is log2(N) for passphrase-protected key files: 2^16
// costs 64 MiB and about a quarter second here, close to what restic
// calibrates to, and far below age's interactive default (2^18, 256 MiB)
// which would dominate the memory use of a small backup.
const scryptWorkFactor = 16

// KeyKind says what a key file can do.
type KeyKind string

const (
	// FullKey holds every secret: it can back up, read and maintain.
	FullKey KeyKind = "full"
	// WriteOnlyKey holds the blob-ID key, the polynomial and the index
	// identity but only the data recipient: enough to deduplicate against
	// the index and add packs, index files and snapshots, not to read any
	// of them back (docs/FORMAT.md "Keys").
	WriteOnlyKey KeyKind = "write-only"
)

// Secrets are the repository's master secrets. Every key file wraps a copy
// (full or reduced) of them.
type Secrets struct {
	// BlobIDKey keys the BLAKE3 hash that names blobs, so that a blob ID
	// says nothing about content to someone without the key.
	BlobIDKey []byte `json:"blob_id_key"`
	// Polynomial is the Rabin polynomial for content-defined chunking,
	// secret because chunk boundaries could otherwise fingerprint files.
	Polynomial string `json:"chunker_polynomial"`
	// DataIdentity decrypts packs and snapshots (mail content and headers).
	DataIdentity  string `json:"data_identity,omitempty"`
	DataRecipient string `json:"data_recipient"`
	// IndexIdentity decrypts index files, which hold only blob IDs and
	// locations — enough for a write-only host to deduplicate.
	IndexIdentity  string `json:"index_identity"`
	IndexRecipient string `json:"index_recipient"`
}

// KeyFileContent is the JSON inside a key file (after age decryption).
type KeyFileContent struct {
	Version  int       `json:"version"`
	Kind     KeyKind   `json:"kind"`
	Created  time.Time `json:"created"`
	Host     string    `json:"host,omitempty"`
	Username string    `json:"username,omitempty"`
	// Label says how this key file is opened, e.g. "passphrase" or
	// "recipients: age1...", for `key list`.
	Label   string  `json:"label"`
	Secrets Secrets `json:"secrets"`
}

func newSecrets() (Secrets, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return Secrets{}, err
	}
	pol, err := chunker.RandomPolynomial()
	if err != nil {
		return Secrets{}, fmt.Errorf("chunker polynomial: %w", err)
	}
	data, err := age.GenerateX25519Identity()
	if err != nil {
		return Secrets{}, err
	}
	index, err := age.GenerateX25519Identity()
	if err != nil {
		return Secrets{}, err
	}
	return Secrets{
		BlobIDKey:      key,
		Polynomial:     strconv.FormatUint(uint64(pol), 16),
		DataIdentity:   data.String(),
		DataRecipient:  data.Recipient().String(),
		IndexIdentity:  index.String(),
		IndexRecipient: index.Recipient().String(),
	}, nil
}

// Credentials open a repository: a passphrase and/or age identities.
type Credentials struct {
	Passphrase string
	Identities []age.Identity
}

func (c Credentials) identities() ([]age.Identity, error) {
	ids := append([]age.Identity(nil), c.Identities...)
	if c.Passphrase != "" {
		s, err := age.NewScryptIdentity(c.Passphrase)
		if err != nil {
			return nil, err
		}
		ids = append(ids, s)
	}
	if len(ids) == 0 {
		return nil, errors.New("no password or identity given (use --password-file, MAILVAULT_PASSWORD or --identity)")
	}
	return ids, nil
}

// LoadIdentities reads an age identity file (as written by age-keygen).
func LoadIdentities(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("identity file: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("identity file %s: %w", path, err)
	}
	return ids, nil
}

// ParseRecipients parses age recipients ("age1..." strings).
func ParseRecipients(list []string) ([]age.Recipient, error) {
	var out []age.Recipient
	for _, s := range list {
		r, err := age.ParseX25519Recipient(s)
		if err != nil {
			return nil, fmt.Errorf("recipient %q: %w", s, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// KeyRecipients says to whom a new key file is encrypted: a passphrase
// (its own key file, since age's scrypt stanza must stand alone) and/or a
// set of age recipients (one key file for the set).
type KeyRecipients struct {
	Passphrase string
	Recipients []string
}

// writeKeyFiles wraps the secrets for the given recipients and stores the
// key files; it returns their IDs.
func writeKeyFiles(ctx context.Context, be Backend, sec Secrets, kind KeyKind, kr KeyRecipients) ([]ID, error) {
	type target struct {
		label string
		rcpts []age.Recipient
	}
	var targets []target
	if kr.Passphrase != "" {
		s, err := age.NewScryptRecipient(kr.Passphrase)
		if err != nil {
			return nil, err
		}
		s.SetWorkFactor(scryptWorkFactor)
		targets = append(targets, target{"passphrase", []age.Recipient{s}})
	}
	if len(kr.Recipients) > 0 {
		rs, err := ParseRecipients(kr.Recipients)
		if err != nil {
			return nil, err
		}
		label := "recipients:"
		for _, r := range kr.Recipients {
			label += " " + r
		}
		targets = append(targets, target{label, rs})
	}
	if len(targets) == 0 {
		return nil, errors.New("a key needs a passphrase or at least one age recipient")
	}
	host, _ := os.Hostname()
	user := os.Getenv("USER")
	var ids []ID
	for _, t := range targets {
		content := KeyFileContent{Version: 1, Kind: kind, Created: time.Now().UTC(), Host: host, Username: user, Label: t.label, Secrets: sec}
		plain, err := json.MarshalIndent(content, "", "  ")
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		w, err := age.Encrypt(&buf, t.rcpts...)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(plain); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		id := fileID(buf.Bytes())
		if err := be.Put(ctx, KeyFile, id.String(), buf.Bytes()); err != nil {
			return nil, err
		}
		if err := writeKeyInfo(ctx, be, sec.IndexRecipient, keyInfoOf(id, &content)); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// openKey finds a key file that the credentials decrypt.
func openKey(ctx context.Context, be Backend, creds Credentials) (ID, *KeyFileContent, error) {
	ids, err := creds.identities()
	if err != nil {
		return ID{}, nil, err
	}
	var names []string
	if err := be.List(ctx, KeyFile, func(name string, _ int64) error {
		names = append(names, name)
		return nil
	}); err != nil {
		return ID{}, nil, err
	}
	if len(names) == 0 {
		return ID{}, nil, fmt.Errorf("repository %s has no key files", be.Location())
	}
	for _, name := range names {
		if _, err := ParseID(name); err != nil {
			continue // a key info file (keyinfo.go)
		}
		raw, err := readAll(ctx, be, KeyFile, name)
		if err != nil {
			return ID{}, nil, err
		}
		r, err := age.Decrypt(bytes.NewReader(raw), ids...)
		if err != nil {
			var noMatch *age.NoIdentityMatchError
			if errors.As(err, &noMatch) {
				continue
			}
			// A scrypt identity against a wrong passphrase also lands here
			// as "incorrect passphrase"; try the next key file.
			continue
		}
		plain, err := io.ReadAll(io.LimitReader(r, 1<<20))
		if err != nil {
			return ID{}, nil, fmt.Errorf("key file %s: %w", name, err)
		}
		var kc KeyFileContent
		if err := json.Unmarshal(plain, &kc); err != nil {
			return ID{}, nil, fmt.Errorf("key file %s: %w", name, err)
		}
		if err := kc.checkKind(); err != nil {
			return ID{}, nil, fmt.Errorf("key file %s: %w", name, err)
		}
		id, err := ParseID(name)
		if err != nil {
			return ID{}, nil, fmt.Errorf("key file %s: %w", name, err)
		}
		return id, &kc, nil
	}
	return ID{}, nil, ErrWrongKey
}

// checkKind makes sure the secrets are what the kind says: a full key
// without the data identity could not read what it wrote, and a
// "write-only" key with one would not be write-only.
func (kc *KeyFileContent) checkKind() error {
	switch kc.Kind {
	case FullKey:
		if kc.Secrets.DataIdentity == "" {
			return errors.New("a full key without a data identity")
		}
	case WriteOnlyKey:
		if kc.Secrets.DataIdentity != "" {
			return errors.New("a write-only key that holds the data identity")
		}
	default:
		return fmt.Errorf("unknown key kind %q", kc.Kind)
	}
	return nil
}

// KeyInfo describes a key file for `key list`.
type KeyInfo struct {
	ID      ID        `json:"id"`
	Current bool      `json:"current"`
	Kind    KeyKind   `json:"kind,omitempty"`
	Label   string    `json:"label,omitempty"`
	Host    string    `json:"host,omitempty"`
	User    string    `json:"user,omitempty"`
	Created time.Time `json:"created,omitzero"`
}

// Keys lists the key files: the one in use from its own content, the
// others from their key info files (keyinfo.go), which every key reads.
// Only a key file written before key info files existed, whose holder
// has not run DescribeKey, is listed with its ID alone.
func (r *Repository) Keys(ctx context.Context) ([]KeyInfo, error) {
	ids, described, err := r.keyFiles(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]KeyInfo, 0, len(ids))
	for _, id := range ids {
		ki := KeyInfo{ID: id}
		if id == r.keyID {
			ki.Current, ki.Kind, ki.Label, ki.Host, ki.User, ki.Created = true, r.key.Kind, r.key.Label, r.key.Host, r.key.Username, r.key.Created
		} else if described[id] {
			rec, ok, err := r.readKeyInfo(ctx, id)
			if err != nil {
				return nil, err
			}
			if ok {
				ki.Kind, ki.Label, ki.Host, ki.User, ki.Created = rec.Kind, rec.Label, rec.Host, rec.Username, rec.Created
			}
		}
		out = append(out, ki)
	}
	return out, nil
}

// AddKey wraps this repository's secrets for new credentials. A key file
// added through a write-only key is write-only too.
func (r *Repository) AddKey(ctx context.Context, kr KeyRecipients) ([]ID, error) {
	return writeKeyFiles(ctx, r.be, r.key.Secrets, r.key.Kind, kr)
}

// AddWriteOnlyKey writes key files for a host that may back up but not
// read: the secrets without the data identity (docs/FORMAT.md "Keys").
func (r *Repository) AddWriteOnlyKey(ctx context.Context, kr KeyRecipients) ([]ID, error) {
	sec := r.key.Secrets
	sec.DataIdentity = ""
	return writeKeyFiles(ctx, r.be, sec, WriteOnlyKey, kr)
}

// WriteOnly reports whether the repository was opened with a write-only
// key, which cannot decrypt packs, trees or snapshots.
func (r *Repository) WriteOnly() bool { return r.key.Kind == WriteOnlyKey }

// RemoveKey deletes a key file; the one in use cannot be removed, and a
// write-only key removes none (it must not lock the owners out).
func (r *Repository) RemoveKey(ctx context.Context, id ID) error {
	if r.WriteOnly() {
		return fmt.Errorf("remove key: %w", ErrWriteOnly)
	}
	if id == r.keyID {
		return errors.New("refusing to remove the key in use; open the repository with another key first")
	}
	w, err := r.removeDurable(ctx, KeyFile, id.String())
	if err != nil {
		return err
	}
	if w != nil {
		// Still there: say until when, rather than "access denied".
		return fmt.Errorf("remove key: %w: %s; remove it again after that date", ErrRetained, w)
	}
	// Its description goes with it; one left behind (a failed remove)
	// describes no key and is never listed.
	_, _ = r.removeDurable(ctx, KeyFile, id.String()+keyInfoSuffix)
	return nil
}

// KeyContent returns the decrypted content of the key file in use, secrets
// included (for `cat key` and the by-hand decryption in docs/FORMAT.md).
func (r *Repository) KeyContent() KeyFileContent { return *r.key }
