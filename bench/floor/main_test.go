package main

import "testing"

// The Message-ID index's blobs are told from the trees' by their
// plaintext alone (docs/FORMAT.md "The Message-ID index", "Trees").
func TestIsMsgIndex(t *testing.T) {
	for _, c := range []struct {
		plain string
		want  bool
	}{
		{`{"index":2,"runs":[{"id":"ab","entries":3}]}`, true},
		{`{"run":2,"pages":[{"id":"ab","first":"00a3c1d2e4f50617","entries":1}]}`, true},
		{`{"page":1,"entries":[{"key":"00a3c1d2e4f50617","dir":"d","unique":"u"}]}`, true},
		{"\x02\x00\x00\x00\x00\x00\x00\x00\x01", true},
		{`{"version":2,"pages":[{"id":"ab","messages":143,"first":"1700000000.M1P2Q3.host"}]}`, false},
		{`{"page":1,"messages":[]}`, false},
		{`{"version":3}`, false},
		{"\x03column-wise", false},
		{"", false},
	} {
		if got := isMsgIndex([]byte(c.plain)); got != c.want {
			t.Errorf("isMsgIndex(%q) = %v, want %v", c.plain, got, c.want)
		}
	}
}
