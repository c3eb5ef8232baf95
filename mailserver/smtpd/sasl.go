package smtpd

import (
	"bufio"
	"errors"
	"io"
)

// loginServer implements the server side of the LOGIN SASL mechanism
// (draft-murchison-sasl-login-00): the server asks "Username:" then
// "Password:", and the client answers each (or sends the username as the
// initial response).
type loginServer struct {
	authenticate func(username, password string) error
	state        int
	username     string
}

var errLoginSyntax = errors.New("smtpd: unexpected LOGIN response")

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.state {
	case 0:
		l.state = 1
		if response == nil {
			return []byte("Username:"), false, nil
		}
		fallthrough
	case 1:
		l.username = string(response)
		l.state = 2
		return []byte("Password:"), false, nil
	case 2:
		l.state = 3
		return nil, true, l.authenticate(l.username, string(response))
	}
	return nil, false, errLoginSyntax
}

func bufioReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 4096) }
