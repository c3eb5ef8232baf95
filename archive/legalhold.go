package archive

import (
	"context"
	"fmt"
)

// LegalHolder is storage that can put a legal hold on a file (S3 Object
// Lock's PutObjectLegalHold): while it is on, no version of the file can
// be deleted, whatever its retention, and it has no end date; lifting it
// leaves the retention as it was. The legal holds of package retention
// put one on every pack holding bytes of held messages.
type LegalHolder interface {
	SetLegalHold(ctx context.Context, t FileType, name string, on bool) error
	LegalHold(ctx context.Context, t FileType, name string) (bool, error)
}

// LegalHolder returns the repository's storage as a LegalHolder when the
// repository has Object Lock, else nil.
func (r *Repository) LegalHolder() LegalHolder {
	if lh, ok := r.be.(LegalHolder); ok && r.cfg.ObjectLock != nil {
		return lh
	}
	return nil
}

// SetLegalHolds puts (on) or lifts the legal hold of each pack; nothing
// when the repository has no Object Lock. It needs a full key, as every
// change of what may be deleted does.
func (r *Repository) SetLegalHolds(ctx context.Context, packs []ID, on bool) error {
	lh := r.LegalHolder()
	if lh == nil || len(packs) == 0 {
		return nil
	}
	if r.WriteOnly() {
		return fmt.Errorf("legal hold: %w", ErrWriteOnly)
	}
	return parallel(ctx, r.Connections(), len(packs), func(i int) error {
		if err := lh.SetLegalHold(ctx, PackFile, packs[i].String(), on); err != nil {
			return fmt.Errorf("legal hold on pack %s: %w", packs[i].Short(), err)
		}
		return nil
	})
}
