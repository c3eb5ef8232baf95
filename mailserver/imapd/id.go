package imapd

import (
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

var _ imapserver.SessionID = (*session)(nil)

// ID answers RFC 2971's ID command, in any state: the server gives its
// name only, as Dovecot does by default (a version would tell an attacker
// which flaws to try). The client's name and version are logged at debug
// level, cut to 64 bytes (RFC 2971 section 3.3 allows 1024); the library
// reads any number of fields and keeps 30.
func (s *session) ID(client map[string]string) *imap.IDData {
	if client != nil {
		s.srv.log.Debug("client id", "ip", s.ip, "name", cut(client["name"], 64), "version", cut(client["version"], 64))
	}
	return &imap.IDData{Name: "mailvault"}
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
