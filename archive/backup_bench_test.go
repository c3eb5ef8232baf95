package archive_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/bench/corpus"
)

// BenchmarkBackupCorpus is a full backup of a generated corpus (issue 11):
// every iteration backs the same tree up into a new repository. Besides
// wall MB/s it reports the process's CPU time per byte of mail (user+sys
// from getrusage, so on a shared machine it says more than the wall
// time) and the repository's stored bytes per byte of mail. The corpus
// size is MAILVAULT_BENCH_CORPUS in MB (default 100); it is generated
// once per run, outside the timer, and read once to warm the page cache.
// MAILVAULT_BENCH_COLD=1 instead drops the corpus from the page cache
// before every backup (corpus.Evict), so that the disk is read.
//
//	go test -run '^$' -bench BackupCorpus -benchtime 3x -cpuprofile cpu.out ./archive
func BenchmarkBackupCorpus(b *testing.B) {
	mb := int64(100)
	if s := os.Getenv("MAILVAULT_BENCH_CORPUS"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		mb = v
	}
	dir := filepath.Join(b.TempDir(), "mail")
	st, err := corpus.Generate(b.Context(), dir, corpus.Options{Seed: 1, TargetBytes: mb * 1e6})
	if err != nil {
		b.Fatal(err)
	}
	mail := st.Bytes
	cold := os.Getenv("MAILVAULT_BENCH_COLD") == "1"
	if !cold {
		readTreeBytes(b, dir)
	}
	b.SetBytes(mail)
	b.ReportAllocs()
	var cpu time.Duration
	var stored int64
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		tr, r := emptyBenchRepo(b)
		if cold {
			if _, _, err := corpus.Evict(dir); err != nil {
				b.Fatal(err)
			}
		}
		c0 := cpuTime(b)
		b.StartTimer()
		runBackup(b, r, dir)
		b.StopTimer()
		cpu += cpuTime(b) - c0
		stored = 0
		for _, n := range tr.packFiles(b) {
			stored += n
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(int64(b.N)*mail), "CPU-ns/B")
	b.ReportMetric(float64(stored)/float64(mail), "stored/B")
}

// cpuTime is the process's user+sys CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readTreeBytes reads every file under dir once, so that each backup
// finds it in the page cache.
func readTreeBytes(b *testing.B, dir string) {
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		_, err = os.ReadFile(p)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkBackupSmallMessages is a full backup of many small messages
// (smallTree's, a few hundred bytes each; issue 11's million-message
// backups are CPU-bound on the cost per message, not per byte): every
// iteration backs the same tree up into a new repository. It reports
// user+sys CPU time and heap allocations per message, which say more on
// a shared machine than the wall time. MAILVAULT_BENCH_MESSAGES sets the
// count (default 20000).
//
//	go test -run '^$' -bench BackupSmallMessages -benchtime 3x ./archive
func BenchmarkBackupSmallMessages(b *testing.B) {
	n := 20000
	if s := os.Getenv("MAILVAULT_BENCH_MESSAGES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			b.Fatal(err)
		}
		n = v
	}
	dir := smallTree(b, n)
	readTreeBytes(b, dir)
	b.ReportAllocs()
	var cpu time.Duration
	var mallocs uint64
	var ms runtime.MemStats
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		_, r := emptyBenchRepo(b)
		runtime.ReadMemStats(&ms)
		m0 := ms.Mallocs
		c0 := cpuTime(b)
		b.StartTimer()
		runBackup(b, r, dir)
		b.StopTimer()
		cpu += cpuTime(b) - c0
		runtime.ReadMemStats(&ms)
		mallocs += ms.Mallocs - m0
		b.StartTimer()
	}
	msgs := float64(int64(b.N) * int64(n))
	b.ReportMetric(float64(cpu.Nanoseconds())/msgs, "CPU-ns/msg")
	b.ReportMetric(float64(mallocs)/msgs, "allocs/msg")
}

// emptyBenchRepo is a new repository opened as a backup opens it: at
// level 1, what the CLI's --compression auto means, its index loaded.
func emptyBenchRepo(b *testing.B) (*testRepo, *archive.Repository) {
	tr := newTestRepo(b, 0)
	r := tr.openOpt(b, archive.Options{Compression: 1})
	if _, err := r.LoadIndex(b.Context()); err != nil {
		b.Fatal(err)
	}
	return tr, r
}
