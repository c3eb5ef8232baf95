package imapserver

// mailvault: NOTIFY (RFC 5465). beta.8 has the capability name only.

import (
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/internal/imapwire"
)

// NotifyFilter names the mailboxes an event group is about (RFC 5465
// section 6, filter-mailboxes).
type NotifyFilter string

const (
	NotifyFilterSelected        NotifyFilter = "SELECTED"
	NotifyFilterSelectedDelayed NotifyFilter = "SELECTED-DELAYED"
	NotifyFilterInboxes         NotifyFilter = "INBOXES"
	NotifyFilterPersonal        NotifyFilter = "PERSONAL"
	NotifyFilterSubscribed      NotifyFilter = "SUBSCRIBED"
	NotifyFilterSubtree         NotifyFilter = "SUBTREE"
	NotifyFilterMailboxes       NotifyFilter = "MAILBOXES"
)

// NotifyEvent is an event name (RFC 5465 section 5), spelled as the RFC
// spells it; names the RFC does not define are kept as the client sent
// them so that the session can refuse them with BADEVENT.
type NotifyEvent string

const (
	NotifyEventMessageNew            NotifyEvent = "MessageNew"
	NotifyEventMessageExpunge        NotifyEvent = "MessageExpunge"
	NotifyEventFlagChange            NotifyEvent = "FlagChange"
	NotifyEventAnnotationChange      NotifyEvent = "AnnotationChange"
	NotifyEventMailboxName           NotifyEvent = "MailboxName"
	NotifyEventSubscriptionChange    NotifyEvent = "SubscriptionChange"
	NotifyEventMailboxMetadataChange NotifyEvent = "MailboxMetadataChange"
	NotifyEventServerMetadataChange  NotifyEvent = "ServerMetadataChange"
)

var notifyEventNames = []NotifyEvent{
	NotifyEventMessageNew, NotifyEventMessageExpunge, NotifyEventFlagChange,
	NotifyEventAnnotationChange, NotifyEventMailboxName,
	NotifyEventSubscriptionChange, NotifyEventMailboxMetadataChange,
	NotifyEventServerMetadataChange,
}

// NotifyOptions is a NOTIFY command: NOTIFY NONE (None) or NOTIFY SET.
type NotifyOptions struct {
	None bool
	// Status: SET STATUS, the client wants a STATUS response for each
	// mailbox the events name other than the selected one before the
	// tagged OK (RFC 5465 section 3.1).
	Status bool
	Groups []NotifyGroup
}

// NotifyGroup is one event-group: a filter and its events. Events is
// empty for NONE.
type NotifyGroup struct {
	Filter    NotifyFilter
	Mailboxes []string // SUBTREE and MAILBOXES
	Events    []NotifyEvent
	// Fetch is MessageNew's fetch-att list (only allowed with SELECTED
	// and SELECTED-DELAYED), nil without one.
	Fetch        *imap.FetchOptions
	fetchOptions fetchWriterOptions
}

// Has reports whether the group asks for ev.
func (g *NotifyGroup) Has(ev NotifyEvent) bool {
	for _, e := range g.Events {
		if e == ev {
			return true
		}
	}
	return false
}

// SessionNotify is an IMAP session which supports NOTIFY (RFC 5465). It
// writes the events it was asked for with UpdateWriter's WriteStatus and
// WriteList (and, for the selected mailbox, the usual EXISTS, EXPUNGE and
// FETCH) when it polls and idles.
type SessionNotify interface {
	Session

	// Notify replaces the session's notification settings. With
	// options.Status it writes the initial STATUS responses with w. An
	// event it does not offer is refused with an *imap.Error of type NO
	// and code BADEVENT (NotifyBadEvent).
	Notify(w *UpdateWriter, options *NotifyOptions) error
}

// NotifyBadEvent is the NO [BADEVENT (supported...)] answer to a NOTIFY
// naming an event the server does not offer (RFC 5465 section 3.1).
func NotifyBadEvent(supported []NotifyEvent) *imap.Error {
	names := make([]string, len(supported))
	for i, ev := range supported {
		names[i] = string(ev)
	}
	return &imap.Error{
		Type: imap.StatusResponseTypeNo,
		Code: imap.ResponseCode("BADEVENT (" + strings.Join(names, " ") + ")"),
		Text: "Event not supported",
	}
}

func (c *Conn) handleNotify(dec *imapwire.Decoder) error {
	var options NotifyOptions
	if err := readNotify(dec, &options); err != nil {
		return err
	}
	if !dec.ExpectCRLF() {
		return dec.Err()
	}
	if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
		return err
	}
	session, ok := c.session.(SessionNotify)
	if !ok || !c.server.options.caps().Has(imap.CapNotify) {
		return &imap.Error{Type: imap.StatusResponseTypeBad, Text: "Unknown command"}
	}
	w := &UpdateWriter{conn: c, allowExpunge: true}
	return session.Notify(w, &options)
}

// readNotify reads NOTIFY's arguments (RFC 5465 section 8):
//
//	notify     = "NOTIFY" SP (notify-set / notify-none)
//	notify-set = "SET" [status-indicator] SP event-groups
func readNotify(dec *imapwire.Decoder, options *NotifyOptions) error {
	var kind string
	if !dec.ExpectSP() || !dec.ExpectAtom(&kind) {
		return dec.Err()
	}
	switch strings.ToUpper(kind) {
	case "NONE":
		options.None = true
		return nil
	case "SET":
	default:
		return newClientBugError("Syntax error: expected SET or NONE")
	}
	if !dec.ExpectSP() {
		return dec.Err()
	}
	var status string
	if dec.Atom(&status) {
		if !strings.EqualFold(status, "STATUS") || !dec.ExpectSP() {
			return newClientBugError("Syntax error: expected STATUS or an event group")
		}
		options.Status = true
	}
	for {
		g, err := readNotifyGroup(dec)
		if err != nil {
			return err
		}
		options.Groups = append(options.Groups, g)
		if !dec.SP() {
			return nil
		}
	}
}

// readNotifyGroup reads "(" filter-mailboxes SP events ")".
func readNotifyGroup(dec *imapwire.Decoder) (NotifyGroup, error) {
	var g NotifyGroup
	if !dec.ExpectSpecial('(') {
		return g, dec.Err()
	}
	var filter string
	if !dec.ExpectAtom(&filter) {
		return g, dec.Err()
	}
	g.Filter = NotifyFilter(strings.ToUpper(filter))
	switch g.Filter {
	case NotifyFilterSelected, NotifyFilterSelectedDelayed, NotifyFilterInboxes, NotifyFilterPersonal, NotifyFilterSubscribed:
	case NotifyFilterSubtree, NotifyFilterMailboxes:
		// one-or-more-mailbox: a mailbox or a parenthesized list of them.
		if !dec.ExpectSP() {
			return g, dec.Err()
		}
		isList, err := dec.List(func() error {
			var name string
			if !dec.ExpectMailbox(&name) {
				return dec.Err()
			}
			g.Mailboxes = append(g.Mailboxes, name)
			return nil
		})
		if err != nil {
			return g, err
		}
		if !isList {
			var name string
			if !dec.ExpectMailbox(&name) {
				return g, dec.Err()
			}
			g.Mailboxes = append(g.Mailboxes, name)
		}
		if len(g.Mailboxes) == 0 {
			return g, newClientBugError("Syntax error: empty mailbox list")
		}
	default:
		return g, newClientBugError("Syntax error: unknown filter " + filter)
	}
	if !dec.ExpectSP() {
		return g, dec.Err()
	}
	var none string
	if dec.Atom(&none) {
		if !strings.EqualFold(none, "NONE") {
			return g, newClientBugError("Syntax error: expected event list or NONE")
		}
	} else {
		// "(" event *(SP event) ")", where MessageNew may be followed by
		// SP and its fetch-att list (RFC 5465 section 8): an event is an
		// atom, so a "(" after SP is that list.
		if !dec.ExpectSpecial('(') {
			return g, dec.Err()
		}
		for {
			var name string
			if !dec.ExpectAtom(&name) {
				return g, dec.Err()
			}
			ev := NotifyEvent(name)
			for _, known := range notifyEventNames {
				if strings.EqualFold(name, string(known)) {
					ev = known
				}
			}
			g.Events = append(g.Events, ev)
			if dec.Special(')') {
				break
			}
			if !dec.ExpectSP() {
				return g, dec.Err()
			}
			if ev != NotifyEventMessageNew || !dec.Special('(') {
				continue
			}
			if g.Fetch != nil {
				return g, newClientBugError("Syntax error: MessageNew twice")
			}
			g.Fetch = &imap.FetchOptions{}
			g.fetchOptions = fetchWriterOptions{obsolete: make(map[*imap.FetchItemBodySection]string)}
			for {
				att, err := readFetchAttName(dec)
				if err != nil {
					return g, err
				}
				if err := handleFetchAtt(dec, att, g.Fetch, &g.fetchOptions); err != nil {
					return g, err
				}
				if dec.Special(')') {
					break
				}
				if !dec.ExpectSP() {
					return g, dec.Err()
				}
			}
			if dec.Special(')') {
				break
			}
			if !dec.ExpectSP() {
				return g, dec.Err()
			}
		}
		if g.Fetch != nil && g.Filter != NotifyFilterSelected && g.Filter != NotifyFilterSelectedDelayed {
			return g, newClientBugError("MessageNew's fetch attributes are for SELECTED and SELECTED-DELAYED only")
		}
	}
	if !dec.ExpectSpecial(')') {
		return g, dec.Err()
	}
	return g, nil
}

// WriteStatus writes an unsolicited STATUS response with the items
// options names (RFC 5465 section 5: the events of mailboxes other than
// the selected one).
func (w *UpdateWriter) WriteStatus(data *imap.StatusData, options *imap.StatusOptions) error {
	return w.conn.writeStatus(data, options)
}

// WriteList writes an unsolicited LIST response (RFC 5465 sections 5.4
// and 5.5: MailboxName and SubscriptionChange).
func (w *UpdateWriter) WriteList(data *imap.ListData) error {
	return w.conn.writeList(data)
}

// WriteNotificationOverflow writes `* OK [NOTIFICATIONOVERFLOW]` (RFC 5465
// section 5.8): the session could not keep up and behaves as after NOTIFY
// NONE from now on.
func (w *UpdateWriter) WriteNotificationOverflow() error {
	enc := newResponseEncoder(w.conn)
	defer enc.end()
	return writeStatusResp(enc.Encoder, "", &imap.StatusResponse{
		Type: imap.StatusResponseTypeOK,
		Code: "NOTIFICATIONOVERFLOW",
		Text: "Too many events, notifications are off",
	})
}

// NotifyFetchWriter writes MessageNew's FETCH responses for g's fetch-att
// (RFC 5465 section 5.2) as a FETCH command would.
func (w *UpdateWriter) NotifyFetchWriter(g *NotifyGroup) *FetchWriter {
	return &FetchWriter{conn: w.conn, options: g.fetchOptions}
}
