package archive

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Policy documents hold the repository's compliance state (legal holds
// now; message-retention rules and erasure records later), so that every
// host and every copy applies the same. Each change writes a new version
// of the whole document naming its parent and appends a record to the
// audit chain; archive only stores and versions them, package retention
// says what they mean. Both are encrypted to the data recipient: reading
// them takes a full key. Writers hold the exclusive lock. See
// docs/FORMAT.md, "Policy documents and the audit chain".

// PolicyDoc is one version of a policy document.
type PolicyDoc struct {
	Version int    `json:"version"` // 1
	Kind    string `json:"kind"`    // e.g. "holds"
	// Seq is 1 for the first version of its kind and the parent's plus
	// one after that.
	Seq    int64     `json:"seq"`
	Parent *ID       `json:"parent,omitempty"` // the version this one replaces
	Time   time.Time `json:"time"`
	// Audit is the hash (AuditRecord.Hash) of the record of the act
	// that wrote this version: a version without its record is a change
	// nobody accounted for.
	Audit string          `json:"audit"`
	Body  json.RawMessage `json:"body"`
	ID    ID              `json:"-"` // the file's name
}

// AuditRecord is one compliance act in the audit chain.
type AuditRecord struct {
	Version int       `json:"version"` // 1
	Seq     int64     `json:"seq"`     // 1, 2, 3, … without gaps
	Time    time.Time `json:"time"`
	Actor   string    `json:"actor"` // user@host, or what --actor said
	Act     string    `json:"act"`   // e.g. "hold add", "hold release"
	Case    string    `json:"case,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	// Detail is the act's particulars (e.g. the hold as added).
	Detail json.RawMessage `json:"detail,omitempty"`
	// Prev is the hex SHA-256 of the previous record's plaintext JSON
	// (its Hash); "" for the first record.
	Prev string `json:"prev"`

	ID   ID     `json:"-"` // the file's name
	Hash string `json:"-"` // hex SHA-256 of this record's plaintext JSON
}

// AuditLog is the audit chain as read back, in Seq order, with every
// break found in it.
type AuditLog struct {
	Records []AuditRecord `json:"records"`
	// Breaks describe what does not chain: a damaged or unreadable
	// record, a gap or a repeat in Seq, a Prev that is not the previous
	// record's hash, a policy document whose record is missing. None
	// means the chain verifies.
	Breaks []string `json:"breaks"`
}

// ErrNoPolicyWriter is returned for a policy write with a write-only key.
var ErrNoPolicyWriter = fmt.Errorf("policy documents: %w (a write-only key cannot read the current version or the audit chain it must extend)", ErrWriteOnly)

// PolicyHead returns the newest version of the policy document of kind,
// or nil when there is none. The newest is the version no other names as
// parent with the highest Seq (then the latest Time, then the greatest
// ID): under the exclusive lock there is one such head. A damaged version
// is an error: compliance state must not be guessed.
func (r *Repository) PolicyHead(ctx context.Context, kind string) (*PolicyDoc, error) {
	if r.dataID == nil {
		return nil, ErrNoPolicyWriter
	}
	docs, err := r.policyDocs(ctx)
	if err != nil {
		return nil, err
	}
	parents := map[ID]bool{}
	for _, d := range docs {
		if d.Parent != nil {
			parents[*d.Parent] = true
		}
	}
	var head *PolicyDoc
	for _, d := range docs {
		if d.Kind != kind || parents[d.ID] {
			continue
		}
		if head == nil || cmp.Or(cmp.Compare(d.Seq, head.Seq), d.Time.Compare(head.Time), d.ID.compare(head.ID)) > 0 {
			head = d
		}
	}
	return head, nil
}

func (id ID) compare(o ID) int {
	for i := range id {
		if c := cmp.Compare(id[i], o[i]); c != 0 {
			return c
		}
	}
	return 0
}

func (r *Repository) policyDocs(ctx context.Context) ([]*PolicyDoc, error) {
	ids, err := r.List(ctx, PolicyFile)
	if err != nil {
		return nil, err
	}
	docs := make([]*PolicyDoc, 0, len(ids))
	for _, id := range ids {
		d := &PolicyDoc{}
		if err := r.LoadJSONFile(ctx, PolicyFile, id, d); err != nil {
			return nil, err
		}
		d.ID = id
		docs = append(docs, d)
	}
	return docs, nil
}

// SavePolicy records an act: it appends rec to the audit chain, then
// writes body as the new version of the document of kind (parent: the
// current head). In that order, so that a crash between the two leaves
// an act recorded but not done, never one done but not recorded. The
// caller holds the exclusive lock.
func (r *Repository) SavePolicy(ctx context.Context, kind string, body any, rec AuditRecord) (*PolicyDoc, *AuditRecord, error) {
	if r.dataID == nil {
		return nil, nil, ErrNoPolicyWriter
	}
	head, err := r.PolicyHead(ctx, kind)
	if err != nil {
		return nil, nil, err
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, nil, err
	}
	saved, err := r.AppendAudit(ctx, rec)
	if err != nil {
		return nil, nil, err
	}
	doc := &PolicyDoc{Version: 1, Kind: kind, Seq: 1, Time: saved.Time, Audit: saved.Hash, Body: raw}
	if head != nil {
		doc.Seq, doc.Parent = head.Seq+1, &head.ID
	}
	if doc.ID, err = r.SaveJSONFile(ctx, PolicyFile, doc); err != nil {
		return nil, nil, err
	}
	return doc, saved, nil
}

// AppendAudit adds rec to the audit chain after its last readable record
// (Seq and Prev are set here; Time when zero). A chain with breaks is
// extended all the same, so that a damaged record never stops a hold
// being placed; the breaks stay reported.
func (r *Repository) AppendAudit(ctx context.Context, rec AuditRecord) (*AuditRecord, error) {
	if r.dataID == nil {
		return nil, ErrNoPolicyWriter
	}
	log, err := r.auditChain(ctx)
	if err != nil {
		return nil, err
	}
	rec.Version, rec.Seq, rec.Prev = 1, 1, ""
	if n := len(log.Records); n > 0 {
		last := log.Records[n-1]
		rec.Seq, rec.Prev = last.Seq+1, last.Hash
	}
	if rec.Time.IsZero() {
		rec.Time = time.Now().UTC()
	}
	plain, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(plain)
	rec.Hash = hex.EncodeToString(sum[:])
	sealed, err := r.encrypt(AuditFile, r.zenc.EncodeAll(plain, nil))
	if err != nil {
		return nil, err
	}
	rec.ID = fileID(sealed)
	if err := r.be.Put(ctx, AuditFile, rec.ID.String(), sealed); err != nil {
		return nil, err
	}
	return &rec, nil
}

// AuditLog reads and verifies the audit chain: every record, in Seq
// order, each one's Prev against the record before it, and each policy
// document head's Audit against the records. An unreadable record is a
// break, not an error: the log of a tampered chain must still be shown.
func (r *Repository) AuditLog(ctx context.Context) (*AuditLog, error) {
	log, err := r.auditChain(ctx)
	if err != nil {
		return nil, err
	}
	hashes := make(map[string]bool, len(log.Records))
	for _, rec := range log.Records {
		hashes[rec.Hash] = true
	}
	docs, err := r.policyDocs(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		if !hashes[d.Audit] {
			log.Breaks = append(log.Breaks, fmt.Sprintf("policy/%s (%s version %d): its audit record %.16s… is not in the chain", d.ID.Short(), d.Kind, d.Seq, d.Audit))
		}
	}
	return log, nil
}

// auditChain reads the audit records in Seq order and checks each one's
// Prev against the record before it: AuditLog without the policy
// documents, all an append needs.
func (r *Repository) auditChain(ctx context.Context) (*AuditLog, error) {
	if r.dataID == nil {
		return nil, ErrNoPolicyWriter
	}
	ids, err := r.List(ctx, AuditFile)
	if err != nil {
		return nil, err
	}
	log := &AuditLog{Records: []AuditRecord{}, Breaks: []string{}}
	for _, id := range ids {
		plain, err := r.LoadFile(ctx, AuditFile, id)
		if err != nil {
			if ctx.Err() != nil || !errors.Is(err, ErrCorrupt) {
				return nil, err
			}
			log.Breaks = append(log.Breaks, fmt.Sprintf("audit/%s: %v", id, err))
			continue
		}
		var rec AuditRecord
		if err := json.Unmarshal(plain, &rec); err != nil {
			log.Breaks = append(log.Breaks, fmt.Sprintf("audit/%s: %v", id, err))
			continue
		}
		sum := sha256.Sum256(plain)
		rec.ID, rec.Hash = id, hex.EncodeToString(sum[:])
		log.Records = append(log.Records, rec)
	}
	slices.SortFunc(log.Records, func(a, b AuditRecord) int {
		return cmp.Or(cmp.Compare(a.Seq, b.Seq), a.ID.compare(b.ID))
	})
	for i, rec := range log.Records {
		prev := ""
		if i > 0 {
			prev = log.Records[i-1].Hash
		}
		switch {
		case rec.Seq != int64(i+1):
			log.Breaks = append(log.Breaks, fmt.Sprintf("record %d (audit/%s): expected sequence number %d: a record is missing or repeated", rec.Seq, rec.ID.Short(), i+1))
		case rec.Prev != prev:
			log.Breaks = append(log.Breaks, fmt.Sprintf("record %d (audit/%s): prev %.16s… is not the SHA-256 of record %d (%.16s…): a record was changed or removed", rec.Seq, rec.ID.Short(), rec.Prev, rec.Seq-1, prev))
		}
	}
	return log, nil
}
