package archive

import "context"

// BackupV1 is Backup writing version 1 folder trees, one blob per folder,
// as releases before paged trees did (docs/FORMAT.md "Trees").
func (r *Repository) BackupV1(ctx context.Context, opt BackupOptions) (*BackupResult, error) {
	return r.backup(ctx, opt, 1)
}
