package imapd

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkAppendOneByOne is a client APPENDing messages one at a time
// into its selected INBOX over implicit TLS, as issue 10's 2,000-message
// import did (15/s against Dovecot's 47/s):
//
//	go test -run '^$' -bench AppendOneByOne -cpuprofile cpu.out ./mailserver/imapd
func BenchmarkAppendOneByOne(b *testing.B) {
	f := newFetchEnv(b, 0, 4096)
	i := 0
	for b.Loop() {
		i++
		msg := benchMessage(i, 4096)
		f.tag++
		tag := fmt.Sprintf("t%d", f.tag)
		if _, err := fmt.Fprintf(f.c, "%s APPEND INBOX (\\Seen) {%d}\r\n", tag, len(msg)); err != nil {
			b.Fatal(err)
		}
		if l, err := f.r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+") {
			b.Fatalf("APPEND continuation: %q %v", l, err)
		}
		if _, err := fmt.Fprintf(f.c, "%s\r\n", msg); err != nil {
			b.Fatal(err)
		}
		for {
			l, err := f.r.ReadString('\n')
			if err != nil {
				b.Fatal(err)
			}
			if strings.HasPrefix(l, tag+" OK") {
				break
			}
			if strings.HasPrefix(l, tag+" ") {
				b.Fatalf("APPEND: %s", l)
			}
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}
