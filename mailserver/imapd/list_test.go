package imapd

import (
	"strings"
	"testing"
)

// LIST (SUBSCRIBED RECURSIVEMATCH) returns a mailbox whose subscribed
// descendants the pattern does not match with CHILDINFO ("SUBSCRIBED"),
// subscribed or not (RFC 5258 section 3.5), and not when the pattern
// matches them (imaptest's listext group).
func TestListRecursiveMatchChildInfo(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.login(t, "alice")
	for _, f := range []string{"t/test1", "t/test2", "t/test2/test1", "t/test7/test7", "t/test8/test8", "t/test8/test9"} {
		c.ok(`c CREATE "` + f + `"`)
	}
	for _, f := range []string{"t/test1", "t/test2/test1", "t/test7/test7", "t/test8/test8", "t/test8/test9"} {
		c.ok(`s SUBSCRIBE "` + f + `"`)
	}
	c.Script(`
		C: a1 LIST (SUBSCRIBED RECURSIVEMATCH) "" t/test2% RETURN (CHILDREN)
		S: * LIST (\HasChildren) "/" "t/test2" (CHILDINFO ("SUBSCRIBED"))
		S: a1 OK
		C: a2 LIST (SUBSCRIBED RECURSIVEMATCH) "" t*test7
		S: * LIST (\HasNoChildren \Subscribed) "/" "t/test7/test7"
		S: a2 OK
		C: a3 LIST (SUBSCRIBED RECURSIVEMATCH) "" t*test8
		S: * LIST (\NonExistent \HasChildren) "/" "t/test8" (CHILDINFO ("SUBSCRIBED"))
		S: * LIST (\HasNoChildren \Subscribed) "/" "t/test8/test8"
		S: a3 OK
		C: a4 LIST (SUBSCRIBED RECURSIVEMATCH) "" (t/test2 t/test2/test1)
		S: * LIST (\HasNoChildren \Subscribed) "/" "t/test2/test1"
		S: a4 OK
		C: a5 LIST (SUBSCRIBED) "" t/test2
		S: a5 OK`)
	// A subscribed parent keeps \Subscribed and gains CHILDINFO. (A
	// Maildir++ parent need not exist: \NonExistent.)
	c.ok(`s SUBSCRIBE "t/test8"`)
	c.Script(`
		C: a6 LIST (SUBSCRIBED RECURSIVEMATCH) "" t/%
		S: * LIST (\HasNoChildren \Subscribed) "/" "t/test1"
		S: * LIST (\HasChildren) "/" "t/test2" (CHILDINFO ("SUBSCRIBED"))
		S: * LIST (\NonExistent \HasChildren) "/" "t/test7" (CHILDINFO ("SUBSCRIBED"))
		S: * LIST (\NonExistent \HasChildren \Subscribed) "/" "t/test8" (CHILDINFO ("SUBSCRIBED"))
		S: a6 OK`)
}

// LSUB with "%" shows the unsubscribed parent of a subscribed mailbox the
// pattern does not reach, flagged \Noselect (RFC 3501 section 6.3.9;
// imaptest's subscribe group), and no longer once the child is
// unsubscribed.
func TestLSubNoselectParent(t *testing.T) {
	e := newTestEnv(t, nil)
	c := e.login(t, "alice")
	for _, f := range []string{"m/test", "m/test2/test", "m/test3/test3"} {
		c.ok(`c CREATE "` + f + `"`)
		c.ok(`s SUBSCRIBE "` + f + `"`)
	}
	out := c.ok(`a1 LSUB "" m/%`)
	want := []string{
		`* LSUB (\HasNoChildren \Subscribed) "/" "m/test"`,
		`* LSUB (\Noselect) "/" "m/test2"`,
		`* LSUB (\Noselect) "/" "m/test3"`,
	}
	if got := strings.Join(out[:len(out)-1], "\n"); got != strings.Join(want, "\n") {
		t.Fatalf("LSUB \"\" m/%%:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	// "*" reaches the children themselves.
	out = c.ok(`a2 LSUB "" *test`)
	mustHave(t, out, `"m/test"`)
	mustHave(t, out, `"m/test2/test"`)
	if has(out, `\Noselect`) {
		t.Fatalf("LSUB with * lists \\Noselect parents: %q", out)
	}
	c.ok(`u UNSUBSCRIBE "m/test3/test3"`)
	if out := c.ok(`a3 LSUB "" m/%`); has(out, `"m/test3"`) {
		t.Fatalf("parent of an unsubscribed mailbox still listed: %q", out)
	}
	// LIST (SUBSCRIBED) is not LSUB: no stand-in parents.
	if out := c.ok(`a4 LIST (SUBSCRIBED) "" m/%`); has(out, `"m/test2"`) {
		t.Fatalf("LIST (SUBSCRIBED) lists an unsubscribed parent: %q", out)
	}
}
