package archive

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"filippo.io/age"
)

// A key file is encrypted to its own passphrase or recipients, so the
// holder of one key cannot read another's kind, host or date. Each key
// file therefore has a key info file beside it, keys/<key file id>.info:
// the same description (no secrets), encrypted to the index recipient,
// which every key — full or write-only — can decrypt (docs/FORMAT.md
// "Keys"). Its name is the one in the repository that is not a content
// hash, so that finding a key's description needs no decryption and
// opening a key reads no description: openKey skips names that are not
// IDs, as older versions' `key list` did.

// keyInfoSuffix ends the name of a key info file.
const keyInfoSuffix = ".info"

// keyInfoRecord is the plaintext of a key info file.
type keyInfoRecord struct {
	Version  int       `json:"version"`
	Key      ID        `json:"key"`
	Kind     KeyKind   `json:"kind"`
	Created  time.Time `json:"created"`
	Host     string    `json:"host,omitempty"`
	Username string    `json:"username,omitempty"`
	Label    string    `json:"label"`
}

func keyInfoOf(id ID, kc *KeyFileContent) keyInfoRecord {
	return keyInfoRecord{Version: 1, Key: id, Kind: kc.Kind, Created: kc.Created, Host: kc.Host, Username: kc.Username, Label: kc.Label}
}

// writeKeyInfo stores the key info file of the key file rec.Key.
func writeKeyInfo(ctx context.Context, be Backend, indexRecipient string, rec keyInfoRecord) error {
	rcpt, err := age.ParseX25519Recipient(indexRecipient)
	if err != nil {
		return fmt.Errorf("key info: index recipient: %w", err)
	}
	plain, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, rcpt)
	if err != nil {
		return err
	}
	if _, err := w.Write(plain); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := be.Put(ctx, KeyFile, rec.Key.String()+keyInfoSuffix, buf.Bytes()); err != nil {
		return fmt.Errorf("key info for %s: %w", rec.Key.Short(), err)
	}
	return nil
}

// readKeyInfo reads the key info file of key file id. A damaged one, or
// one that describes another key, is no description: `key list` shows
// the key without one rather than failing.
func (r *Repository) readKeyInfo(ctx context.Context, id ID) (rec keyInfoRecord, ok bool, err error) {
	raw, err := readAll(ctx, r.be, KeyFile, id.String()+keyInfoSuffix)
	if errors.Is(err, ErrNotExist) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, err
	}
	pr, err := age.Decrypt(bytes.NewReader(raw), r.indexID)
	if err != nil {
		return rec, false, nil
	}
	plain, err := io.ReadAll(io.LimitReader(pr, 1<<20))
	if err != nil || json.Unmarshal(plain, &rec) != nil || rec.Version != 1 || rec.Key != id {
		return keyInfoRecord{}, false, nil
	}
	return rec, true, nil
}

// keyFiles lists the IDs of the key files and of those with a key info
// file.
func (r *Repository) keyFiles(ctx context.Context) (keys []ID, described map[ID]bool, err error) {
	described = map[ID]bool{}
	err = r.be.List(ctx, KeyFile, func(name string, _ int64) error {
		if base, ok := strings.CutSuffix(name, keyInfoSuffix); ok {
			if id, err := ParseID(base); err == nil {
				described[id] = true
			}
		} else if id, err := ParseID(name); err == nil {
			keys = append(keys, id)
		}
		return nil
	})
	return keys, described, err
}

// DescribeKey writes the key info file of the key in use when the
// repository has none, so that the holders of other keys see its kind,
// host and date in `key list`: key files written before key info files
// existed have none until their own holder runs this. It reports whether
// it wrote one.
func (r *Repository) DescribeKey(ctx context.Context) (bool, error) {
	if _, ok, err := r.readKeyInfo(ctx, r.keyID); err != nil || ok {
		return false, err
	}
	return true, writeKeyInfo(ctx, r.be, r.key.Secrets.IndexRecipient, keyInfoOf(r.keyID, r.key))
}
