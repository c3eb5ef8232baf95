package imapd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/mailvault/mailvault/mailserver/store"
)

// subscriptionsFile is the Courier/Dovecot Maildir++ subscription list in
// the Maildir root: one folder name per line (archived and restored with
// the Maildir).
const subscriptionsFile = "subscriptions"

func (s *Server) subscriptions(a store.Account) (map[string]bool, error) {
	b, err := os.ReadFile(filepath.Join(s.store.MaildirPath(a), subscriptionsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("imapd: subscriptions: %w", err)
	}
	subs := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "V\t") {
			subs[line] = true
		}
	}
	return subs, nil
}

// updateSubscriptions edits the list and replaces the file atomically
// (temporary file, fsync, rename, fsync of the directory).
func (s *Server) updateSubscriptions(a store.Account, edit func(map[string]bool)) error {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	subs, err := s.subscriptions(a)
	if err != nil {
		return err
	}
	edit(subs)
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, n := range names {
		b.WriteString(n + "\n")
	}
	dir := s.store.MaildirPath(a)
	tmp, err := os.CreateTemp(dir, ".subscriptions-*")
	if err != nil {
		return fmt.Errorf("imapd: subscriptions: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("imapd: subscriptions: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("imapd: subscriptions: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("imapd: subscriptions: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, subscriptionsFile)); err != nil {
		return fmt.Errorf("imapd: subscriptions: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("imapd: subscriptions: %w", err)
	}
	defer d.Close()
	return d.Sync()
}
