package imapd

import (
	"fmt"
	"strings"
	"testing"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
)

// THREAD (RFC 5256): REFERENCES links by References (In-Reply-To without
// one), keeps a dummy parent of two replies to a missing message at the
// root, merges threads with the same base subject; ORDEREDSUBJECT groups
// by base subject under the earliest message. UID THREAD answers UIDs.
func TestThread(t *testing.T) {
	e := newTestEnv(t, nil)
	for i, m := range []struct{ id, refs, subject, hour string }{
		{"<a@x>", "", "topic", "01"},                           // 1
		{"<b@x>", "References: <a@x>\r\n", "Re: topic", "03"},  // 2: reply to 1
		{"<c@x>", "In-Reply-To: <b@x>\r\n", "Re: topic", "02"}, // 3: reply to 2
		{"<d@x>", "References: <gone@x>\r\n", "lost", "04"},    // 4: replies to a missing message
		{"<e@x>", "References: <gone@x>\r\n", "lost", "05"},    // 5
		{"<f@x>", "", "Re: other", "07"},                       // 6
		{"<g@x>", "", "other", "06"},                           // 7: 6 is a reply to it by subject
	} {
		e.Deliver(t, alice, "", fmt.Sprintf("From: bob@x.test\r\nSubject: %s\r\nMessage-ID: %s\r\n%sDate: Mon, 02 Jan 2006 %s:00:00 +0000\r\n\r\nbody %d\r\n", m.subject, m.id, m.refs, m.hour, i))
	}
	c := e.login(t, "alice")
	mustHave(t, c.ok("a0 CAPABILITY"), " THREAD=ORDEREDSUBJECT THREAD=REFERENCES")
	c.ok("a1 SELECT INBOX")
	c.Script(`
		C: b1 THREAD REFERENCES UTF-8 ALL
		S: * THREAD (1 2 3)((4)(5))(7 6)
		S: b1 OK
		C: b2 THREAD ORDEREDSUBJECT UTF-8 ALL
		S: * THREAD (1 (3)(2))(4 5)(7 6)
		S: b2 OK
		C: b3 UID THREAD REFERENCES US-ASCII 2:5
		S: * THREAD (2 3)((4)(5))
		S: b3 OK
		C: b4 THREAD REFERENCES UTF-8 SUBJECT nothing
		S: * THREAD
		S: b4 OK
		C: b5 THREAD FANCY UTF-8 ALL
		S: b5 BAD`)
}

// FuzzThreadReferences builds messages whose Message-ID, References and
// Subject come from the input (duplicates, loops, self-references,
// missing ids): REFERENCES ends, and every message is in its answer
// exactly once.
func FuzzThreadReferences(f *testing.F) {
	f.Add([]byte("ab|ba|aa|cb"), []byte("re:x|x|[fwd: x]|y"))
	f.Add([]byte("a|a|a"), []byte("||"))
	f.Add([]byte("abcdefgh|hgfedcba|aabb"), []byte("s|Re: s|s (fwd)"))
	f.Fuzz(func(t *testing.T, ids, subjects []byte) {
		recs := strings.Split(string(ids), "|")
		subj := strings.Split(string(subjects), "|")
		if len(recs) > 200 {
			recs = recs[:200]
		}
		var msgs []*sortMsg
		for i, r := range recs {
			var h mail.Header
			h.Header = gomessage.Header{}
			if r != "" {
				h.Set("Message-Id", "<"+r[:1]+"@x>")
				var refs []string
				for _, c := range r[1:] {
					refs = append(refs, "<"+string(c)+"@x>")
				}
				h.Set("References", strings.Join(refs, " "))
			}
			s := ""
			if i < len(subj) {
				s = subj[i]
			}
			base, reply := baseSubject(s)
			msgs = append(msgs, &sortMsg{seq: uint32(i + 1), uid: uint32(i + 1), subject: base, reply: reply, header: h})
		}
		seen := map[uint32]int{}
		var walk func(n *tnode)
		walk = func(n *tnode) {
			if n.msg != nil {
				seen[n.msg.seq]++
			}
			for _, c := range n.children {
				walk(c)
			}
		}
		for _, r := range references(msgs) {
			walk(r)
		}
		for _, m := range msgs {
			if seen[m.seq] != 1 {
				t.Fatalf("message %d is %d times in the threads of %q", m.seq, seen[m.seq], recs)
			}
		}
	})
}
