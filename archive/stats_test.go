package archive_test

import "testing"

// TestSummaryPerBackup: the counts in a snapshot's summary are those of
// that backup, also when one Repository makes several backups.
func TestSummaryPerBackup(t *testing.T) {
	src := genCorpus(t, 51, 1e6)
	r := newTestRepo(t, 0).open(t)
	first := runBackup(t, r, src).Snapshot.Summary
	second := runBackup(t, r, src).Snapshot.Summary
	if first.BytesNew == 0 || first.BlobsNew == 0 || first.PacksWritten == 0 {
		t.Fatalf("first backup stored nothing: %+v", first)
	}
	if second.BytesNew != 0 || second.BlobsNew != 0 || second.BytesStored != 0 || second.PacksWritten != 0 || second.BytesRead != 0 {
		t.Errorf("second backup of an unchanged tree: %d bytes new (%d stored) in %d blobs and %d packs, %d read; want all 0",
			second.BytesNew, second.BytesStored, second.BlobsNew, second.PacksWritten, second.BytesRead)
	}
}
