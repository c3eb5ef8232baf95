package imapd

import (
	"strings"
	"testing"
)

// field returns the value after "[NAME " in the line that has it.
func field(t testing.TB, lines []string, name string) string {
	t.Helper()
	for _, l := range lines {
		if _, rest, ok := strings.Cut(l, "["+name+" "); ok {
			v, _, _ := strings.Cut(rest, "]")
			return v
		}
	}
	t.Fatalf("no [%s in:\n%s", name, strings.Join(lines, "\n"))
	return ""
}

// A mailbox deleted and created again at once gets a new UIDVALIDITY
// (RFC 3501 section 2.3.1.1; imaptest's "uidvalidity" test).
func TestUIDValidityChangesWhenRecreated(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.login(t, "alice")
	seen := map[string]bool{}
	for i := range 3 {
		c.ok("a1 CREATE Again")
		v := field(t, c.ok("a2 SELECT Again"), "UIDVALIDITY")
		if seen[v] {
			t.Fatalf("round %d: UIDVALIDITY %s again", i, v)
		}
		seen[v] = true
		c.ok("a3 UNSELECT")
		c.ok("a4 DELETE Again")
	}
}
