package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/mailmeta"
)

func newEraseCmd(g *globals) *cobra.Command {
	var (
		sel           archive.MessageSelector
		dryRun        bool
		actor, reason string
	)
	cmd := &cobra.Command{
		Use:   "erase (--message-id ID | --user USER)... [--dry-run]",
		Short: "Remove messages from every snapshot and their bytes from every pack",
		Long: `Remove the messages picked by --message-id (angle brackets optional) or
--user from every snapshot, then prune so that no pack still holds their
bytes: each snapshot holding one is written again without it (same time,
host, tags and paths; without its Message-ID index, which the next backup
builds anew), the old snapshot is deleted, and every pack holding a blob
only the removed messages used — or their old folder lists — is repacked or
deleted, whatever prune's --max-unused; a blob a kept message also uses
stays. No other pack is rewritten. --dry-run lists what would be removed.

Safe to kill at any point: the blobs to purge are recorded first (docs/
FORMAT.md "Erasure"), and erase run again — with the same or any selector —
finishes the job. No message matching is an error (exit 1) and changes
nothing, unless an interrupted erasure is left to finish. In an Object Lock repository what is under retention stays until
its date and is listed as waiting (exit 0): run prune after it. Messages
still in the live mailboxes come back with the next backup: delete them
there first. Takes an exclusive lock; needs a full key.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if len(sel.MessageIDs) == 0 && len(sel.Users) == 0 {
				return fmt.Errorf("%w: erase needs --message-id or --user", errUsage)
			}
			for _, id := range sel.MessageIDs {
				if mailmeta.MessageID(id) == "" {
					return fmt.Errorf("%w: --message-id %q is empty once its brackets, spaces and control characters are left out", errUsage, id)
				}
			}
			repo, done, err := g.openExclusive(ctx)
			if err != nil {
				return err
			}
			defer done()
			opt := archive.EraseOptions{Select: sel, DryRun: dryRun}
			if opt.Held, err = heldCase(ctx, repo); err != nil {
				return err
			}
			// A write-only parent cache on this host holds the old folder
			// lists; it is cleaned if there is one.
			if dir, err := g.parentCacheDir(repo.Config().ID); err == nil {
				opt.ParentCache = dir
			}
			who := orDefault(actor, defaultActor())
			if !dryRun {
				// Recorded before anything is removed, so that no erasure
				// happens without a record of who asked for it and why.
				if _, err := repo.AppendAudit(ctx, archive.AuditRecord{Actor: who, Act: "erase start", Reason: reason, Detail: mustJSON(erasureRequest{sel.MessageIDs, sel.Users})}); err != nil {
					return fmt.Errorf("erase: recording it in the audit chain: %w", err)
				}
			}
			res, err := repo.RemoveMessages(ctx, opt)
			if errors.Is(err, archive.ErrHeld) {
				return withCode(exitHeld, fmt.Errorf("%w; nothing erased: the hold must be released first (mailvault hold release)", err))
			}
			if err != nil {
				return err
			}
			if !dryRun {
				if _, err := repo.AppendAudit(ctx, archive.AuditRecord{Actor: who, Act: "erase", Reason: reason, Detail: mustJSON(erasureRecord(res))}); err != nil {
					return fmt.Errorf("erase: done, but recording it in the audit chain failed: %w", err)
				}
			}
			if g.json {
				return g.printJSON(res)
			}
			printErase(g, res)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&sel.MessageIDs, "message-id", nil, "erase the messages with this Message-ID (repeatable)")
	cmd.Flags().StringArrayVar(&sel.Users, "user", nil, "erase every message of this user, e.g. alice@example.com (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "change nothing; list what would be removed")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit chain (e.g. the request's reference)")
	actorFlag(cmd, &actor)
	return cmd
}

func printErase(g *globals, res *archive.EraseResult) {
	verb := "removed"
	if res.DryRun {
		verb = "would remove"
	}
	if res.Resumed {
		g.printf("finishing an interrupted erasure\n")
	}
	g.printf("%s %d messages from %d snapshots\n", verb, len(res.Removed), len(res.Snapshots))
	for _, m := range res.Removed {
		g.printf("  snapshot %s %s/%s: Message-ID %q, subject %q (%s)\n", m.Snapshot.Short(), m.User, m.Folder, m.MessageID, m.Subject, m.Unique)
	}
	if res.DryRun {
		return
	}
	for _, s := range res.Snapshots {
		g.printf("snapshot %s is now %s\n", s.From.Short(), s.To.Short())
	}
	g.printf("%d packs rewritten, %d deleted\n", len(res.PacksRewritten), len(res.PacksDeleted))
	if len(res.Waiting) > 0 {
		g.printf("%d files wait for their object-lock retention; their bytes stay until then (run prune after):\n", len(res.Waiting))
		for _, w := range res.Waiting {
			g.printf("  %s\n", w)
		}
	}
}

// heldCase answers, for an erasure, which active legal hold selects a
// message (its case), "" for none; nil when no hold is active.
func heldCase(ctx context.Context, repo *archive.Repository) (func(user, folder string, m *archive.Message) string, error) {
	ms, err := activeMatchers(ctx, repo)
	if err != nil || len(ms) == 0 {
		return nil, err
	}
	return func(user, folder string, m *archive.Message) string {
		rm := holdView(&archive.FolderEntry{User: user, Folder: folder}, m)
		for _, h := range ms {
			if h.Match(&rm) {
				return h.Case
			}
		}
		return ""
	}, nil
}

// erasureRequest is what an erasure was asked to remove, recorded before
// it starts.
type erasureRequest struct {
	MessageIDs []string `json:"message_ids,omitempty"`
	Users      []string `json:"users,omitempty"`
}

// erasure is the record of an erasure kept in the audit chain: what went
// (Message-IDs, users, counts — not subjects: the record must not keep
// what it erased), from which snapshots, which packs, and what Object
// Lock still keeps until when.
type erasure struct {
	MessageIDs     []string                 `json:"message_ids"`
	Users          []string                 `json:"users"`
	Messages       int                      `json:"messages"`
	Snapshots      []archive.CopiedSnapshot `json:"snapshots"`
	PacksRewritten []archive.ID             `json:"packs_rewritten"`
	PacksDeleted   []archive.ID             `json:"packs_deleted"`
	Waiting        []archive.Waiting        `json:"waiting,omitempty"`
	Resumed        bool                     `json:"resumed,omitempty"`
}

func erasureRecord(res *archive.EraseResult) erasure {
	e := erasure{Messages: len(res.Removed), Snapshots: res.Snapshots, PacksRewritten: res.PacksRewritten,
		PacksDeleted: res.PacksDeleted, Waiting: res.Waiting, Resumed: res.Resumed}
	for _, m := range res.Removed {
		if m.MessageID != "" && !slices.Contains(e.MessageIDs, m.MessageID) {
			e.MessageIDs = append(e.MessageIDs, m.MessageID)
		}
		if !slices.Contains(e.Users, m.User) {
			e.Users = append(e.Users, m.User)
		}
	}
	return e
}

// mustJSON is v as JSON; v is one of this file's plain structs.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
