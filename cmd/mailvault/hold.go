package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/retention"
)

const holdLong = `Legal holds: messages that must not be lost while a case is open.

A hold selects the messages in its custodians' mailboxes (any mailbox when
none is named) that match its query and are dated within --from and --to
(days, YYYY-MM-DD, UTC, both included; a message is dated by its Date
header, or its delivery time when it has none). At least one of
--custodian, --query, --from, --to is needed. The query language, over the
headers every snapshot records:
  from:bob  to:alice  cc:carol  subject:"board minutes"  message-id:<x@y>
  date:2024-01-01..2024-03-31  date:2024-05-01  date:..2023-12-31
  merger  "two words"         (bare: any of from, to, cc, subject)
  a b = a AND b;  a OR b;  NOT a, -a;  ( ... )     (AND binds tighter)
Text matches are case-insensitive substrings; message-id is the whole ID.

Holds are stored in the repository (encrypted; reading or changing them
needs a full key), and every add and release is appended to the
repository's audit chain with who (--actor, default user@host), when and
why; "hold log" shows and verifies the chain.

While a hold is active, forget keeps every snapshot that holds a message
it selects ("held by case NAME"), and refuses to forget such a snapshot by
ID (exit 16); so prune keeps their data. In an S3 repository with Object
Lock, add also puts an S3 legal hold on every pack holding held mail, and
release lifts it where no other active hold needs the pack. A hold that
matches no message
yet is still placed (mail of a custodian may arrive in later backups), with
a warning. Releasing lifts it; the record stays.`

func newHoldCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hold",
		Short: "Place, list, show and release legal holds, and show their audit log",
		Long:  holdLong,
	}
	cmd.AddCommand(newHoldAddCmd(g), newHoldListCmd(g), newHoldShowCmd(g), newHoldReleaseCmd(g), newHoldLogCmd(g))
	return cmd
}

// actorFlag adds --actor: who is recorded in the audit chain.
func actorFlag(cmd *cobra.Command, actor *string) {
	cmd.Flags().StringVar(actor, "actor", "", "who to record in the audit chain (default: user@host of this process)")
}

// defaultActor is user@host of this process.
func defaultActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + host
}

func newHoldAddCmd(g *globals) *cobra.Command {
	var h retention.Hold
	var actor string
	cmd := &cobra.Command{
		Use:   "add --case NAME [--custodian USER...] [--query Q] [--from DATE] [--to DATE] [--reason TEXT]",
		Short: "Place a legal hold",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := h.Validate(); err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			ctx := cmd.Context()
			repo, done, err := g.openExclusive(ctx)
			if err != nil {
				return err
			}
			defer done()
			hs, err := loadHolds(ctx, repo)
			if err != nil {
				return err
			}
			if hs.Find(h.Case) != nil {
				return fmt.Errorf("%w: case %q already has an active hold (release it first, or choose another name)", errUsage, h.Case)
			}
			h.CreatedBy, h.CreatedAt = orDefault(actor, defaultActor()), time.Now().UTC()
			rep, err := g.holdReport(ctx, repo, &h, false)
			if err != nil {
				return err
			}
			// The packs' legal holds first: if placing them fails,
			// nothing is recorded and the command can simply be rerun.
			if err := repo.SetLegalHolds(ctx, parseIDs(rep.Packs), true); err != nil {
				return err
			}
			if repo.LegalHolder() != nil {
				rep.LegalHolds = len(rep.Packs)
			}
			hs.Holds = append(hs.Holds, h)
			detail, err := json.Marshal(h)
			if err != nil {
				return err
			}
			rec := archive.AuditRecord{Time: h.CreatedAt, Actor: h.CreatedBy, Act: "hold add", Case: h.Case, Reason: h.Reason, Detail: detail}
			if _, _, err := repo.SavePolicy(ctx, retention.HoldsKind, hs, rec); err != nil {
				return err
			}
			if rep.Messages == 0 {
				fmt.Fprintf(g.stderr, "warning: hold %q matches no message in the repository's snapshots now; it is placed all the same\n", h.Case)
			}
			if g.json {
				return g.printJSON(rep)
			}
			g.printf("placed hold %q: %d messages (%s) in %d snapshots\n", h.Case, rep.Messages, humanBytes(rep.Bytes), len(rep.Snapshots))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&h.Case, "case", "", "the case's name (required)")
	f.StringArrayVar(&h.Custodians, "custodian", nil, "hold this mailbox user's messages, e.g. alice@example.com; repeatable")
	f.StringVar(&h.Query, "query", "", "hold the messages this query matches (see mailvault hold --help)")
	f.StringVar(&h.From, "from", "", "hold messages dated this day (YYYY-MM-DD, UTC) or later")
	f.StringVar(&h.To, "to", "", "hold messages dated this day (YYYY-MM-DD, UTC) or earlier")
	f.StringVar(&h.Reason, "reason", "", "why, for the audit chain")
	actorFlag(cmd, &actor)
	return cmd
}

func orDefault(s, dflt string) string {
	if s == "" {
		return dflt
	}
	return s
}

func newHoldListCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the active legal holds (--all: the released ones too)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			repo, done, err := g.openLocked(ctx)
			if err != nil {
				return err
			}
			defer done()
			hs, err := loadHolds(ctx, repo)
			if err != nil {
				return err
			}
			list := []retention.Hold{}
			for _, h := range hs.Holds {
				if all || h.Active() {
					list = append(list, h)
				}
			}
			if g.json {
				return g.printJSON(list)
			}
			if len(list) == 0 {
				g.printf("no legal holds\n")
			}
			for _, h := range list {
				g.printf("%s\n", describeHold(&h))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "list released holds too")
	return cmd
}

// describeHold is one line about h for people.
func describeHold(h *retention.Hold) string {
	var sel []string
	if len(h.Custodians) > 0 {
		sel = append(sel, "custodians "+strings.Join(h.Custodians, ", "))
	}
	if h.Query != "" {
		sel = append(sel, fmt.Sprintf("query %q", h.Query))
	}
	if h.From != "" || h.To != "" {
		sel = append(sel, fmt.Sprintf("dated %s..%s", h.From, h.To))
	}
	s := fmt.Sprintf("%s: %s; placed %s by %s", h.Case, strings.Join(sel, "; "), h.CreatedAt.Format(time.DateTime), h.CreatedBy)
	if h.Reason != "" {
		s += fmt.Sprintf(" (%s)", h.Reason)
	}
	if r := h.Released; r != nil {
		s += fmt.Sprintf("; released %s by %s (%s)", r.At.Format(time.DateTime), r.By, r.Reason)
	}
	return s
}

// errNoHold is an unknown or released case.
var errNoHold = errors.New("no active hold")

func newHoldReleaseCmd(g *globals) *cobra.Command {
	var name, reason, actor string
	cmd := &cobra.Command{
		Use:   "release --case NAME --reason TEXT",
		Short: "Release a legal hold (the audit chain records who and why)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := retention.ValidCase(name); err != nil {
				return fmt.Errorf("%w: --case: %v", errUsage, err)
			}
			if strings.TrimSpace(reason) == "" {
				return fmt.Errorf("%w: --reason is required: the audit chain records why a hold was released", errUsage)
			}
			ctx := cmd.Context()
			repo, done, err := g.openExclusive(ctx)
			if err != nil {
				return err
			}
			defer done()
			hs, h, err := activeHold(ctx, repo, name)
			if err != nil {
				return err
			}
			lift, err := g.packsToLift(ctx, repo, hs, h)
			if err != nil {
				return err
			}
			h.Released = &retention.Release{By: orDefault(actor, defaultActor()), At: time.Now().UTC(), Reason: reason}
			rec := archive.AuditRecord{Time: h.Released.At, Actor: h.Released.By, Act: "hold release", Case: name, Reason: reason}
			if _, _, err := repo.SavePolicy(ctx, retention.HoldsKind, hs, rec); err != nil {
				return err
			}
			// After the release is recorded: a failure here leaves packs
			// held longer, never a held message unprotected.
			if err := repo.SetLegalHolds(ctx, lift, false); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(h)
			}
			g.printf("released hold %q\n", name)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "case", "", "the case (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; recorded in the audit chain)")
	actorFlag(cmd, &actor)
	return cmd
}

func newHoldLogCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "log",
		Short: "Show the audit chain of compliance acts and verify it (exit 13 when it is broken)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			repo, done, err := g.openLocked(ctx)
			if err != nil {
				return err
			}
			defer done()
			log, err := repo.AuditLog(ctx)
			if err != nil {
				return err
			}
			var broken error
			if len(log.Breaks) > 0 {
				broken = withCode(exitCheckFailed, fmt.Errorf("the audit chain is broken: %s", strings.Join(log.Breaks, "; ")))
			}
			if g.json {
				// Each record with its file and its hash, which the
				// next record's prev names.
				type row struct {
					archive.AuditRecord
					ID   archive.ID `json:"id"`
					Hash string     `json:"hash"`
				}
				out := struct {
					Records  []row    `json:"records"`
					Breaks   []string `json:"breaks"`
					Verified bool     `json:"verified"`
				}{[]row{}, log.Breaks, broken == nil}
				for _, r := range log.Records {
					out.Records = append(out.Records, row{r, r.ID, r.Hash})
				}
				if err := g.printJSON(out); err != nil {
					return err
				}
				return broken
			}
			for _, r := range log.Records {
				line := fmt.Sprintf("%4d  %s  %-14s %-20s %s", r.Seq, r.Time.Format(time.RFC3339), r.Act, r.Case, r.Actor)
				if r.Reason != "" {
					line += ": " + r.Reason
				}
				g.printf("%s\n", line)
			}
			if broken == nil {
				g.printf("audit chain of %d records verifies\n", len(log.Records))
			}
			return broken
		},
	}
}
