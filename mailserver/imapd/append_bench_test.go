package imapd

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// BenchmarkAppendOneByOne is bench/mailserver/append.py in process: a
// client APPENDing messages one at a time, each with \Seen and a date,
// into a folder of its own that it has selected, over implicit TLS, as
// issue 10's 2,000-message import did (15/s against Dovecot's 47/s then).
// Besides the rate it reports the store's fsyncs per APPEND, whose
// latency is most of an APPEND's (docs/PERFORMANCE.md):
//
//	go test -run '^$' -bench AppendOneByOne -benchtime 2000x -cpuprofile cpu.out ./mailserver/imapd
func BenchmarkAppendOneByOne(b *testing.B) {
	f := newFetchEnv(b, 0, 4096)
	f.run(b, "CREATE Import")
	f.run(b, "SELECT Import")
	date := time.Date(2025, 12, 6, 5, 46, 40, 0, time.UTC)
	syncs := f.Store.Syncs()
	i := 0
	for b.Loop() {
		i++
		f.appendOne(b, "Import", benchMessage(i, 4096), date.Add(time.Duration(i)*time.Second))
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
	b.ReportMetric(float64(f.Store.Syncs()-syncs)/float64(b.N), "fsyncs/op")
}

// appendOne APPENDs msg to folder as imaplib does: the command with a
// synchronizing literal, the literal after the continuation request, then
// the responses up to the tagged OK.
func (f *fetchEnv) appendOne(tb testing.TB, folder, msg string, date time.Time) {
	f.tag++
	tag := fmt.Sprintf("t%d", f.tag)
	if _, err := fmt.Fprintf(f.c, "%s APPEND %s (\\Seen) \"%s\" {%d}\r\n", tag, folder, date.Format("02-Jan-2006 15:04:05 -0700"), len(msg)); err != nil {
		tb.Fatal(err)
	}
	if l, err := f.r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+") {
		tb.Fatalf("APPEND continuation: %q %v", l, err)
	}
	if _, err := fmt.Fprintf(f.c, "%s\r\n", msg); err != nil {
		tb.Fatal(err)
	}
	for {
		l, err := f.r.ReadString('\n')
		if err != nil {
			tb.Fatal(err)
		}
		if strings.HasPrefix(l, tag+" OK") {
			return
		}
		if strings.HasPrefix(l, tag+" ") {
			tb.Fatalf("APPEND: %s", l)
		}
	}
}
