package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
)

func newKeyCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage the key files that open the repository"}
	list := &cobra.Command{
		Use: "list", Short: "List key files", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, err := g.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			defer repo.Close()
			// A key file from before key info files has none until its
			// holder lists the keys: describe ours for the others.
			if wrote, err := repo.DescribeKey(cmd.Context()); err != nil {
				g.logger().Warn("cannot describe the key in use for other keys' holders", "err", err)
			} else if wrote {
				g.logger().Info("described the key in use for other keys' holders")
			}
			keys, err := repo.Keys(cmd.Context())
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(keys)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, " ID\tKind\tHost\tCreated\tOpened by")
			unknown := 0
			for _, k := range keys {
				mark := " "
				if k.Current {
					mark = "*"
				}
				if k.Kind == "" {
					unknown++
					fmt.Fprintf(tw, "%s%s\t?\t?\t?\t?\n", mark, k.ID.Short())
					continue
				}
				fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", mark, k.ID.Short(), k.Kind, k.Host, k.Created.Local().Format("2006-01-02 15:04"), k.Label)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if unknown > 0 {
				g.printf("?: added by an older mailvault; described once its holder runs key list\n")
			}
			return nil
		},
	}
	var recipients []string
	var newPasswordFile string
	var writeOnly bool
	add := &cobra.Command{
		Use: "add", Short: "Add a key file for a new passphrase or age recipients", Args: cobra.NoArgs,
		Long: `Add a key file for a new passphrase or age recipients. With --write-only the
key file lacks the data identity: a host holding it can back up (and
deduplicate against the index) but cannot restore, list or check anything;
such commands exit with code 12. See docs/FORMAT.md "Keys".`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			repo, err := g.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			defer repo.Close()
			kr := archive.KeyRecipients{Recipients: recipients}
			if newPasswordFile != "" {
				if kr.Passphrase, err = readPasswordFile(newPasswordFile); err != nil {
					return fmt.Errorf("new password file: %w", err)
				}
			}
			if kr.Passphrase == "" && len(recipients) == 0 {
				return fmt.Errorf("%w: give --new-password-file or --recipient", errUsage)
			}
			add, kind := repo.AddKey, archive.FullKey
			if writeOnly || repo.WriteOnly() {
				add, kind = repo.AddWriteOnlyKey, archive.WriteOnlyKey
			}
			ids, err := add(cmd.Context(), kr)
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"added": ids, "kind": kind})
			}
			for _, id := range ids {
				g.printf("added %s key %s\n", kind, id.Short())
			}
			return nil
		},
	}
	add.Flags().StringArrayVar(&recipients, "recipient", nil, "age recipient for the new key file; repeatable")
	add.Flags().StringVar(&newPasswordFile, "new-password-file", "", "file holding the new passphrase")
	add.Flags().BoolVar(&writeOnly, "write-only", false, "a key that can back up but not decrypt mail (no data identity)")
	remove := &cobra.Command{
		Use: "remove ID", Short: "Remove a key file (not the one in use)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			repo, err := g.openRepo(cmd.Context())
			if err != nil {
				return err
			}
			defer repo.Close()
			keys, err := repo.Keys(cmd.Context())
			if err != nil {
				return err
			}
			var match []archive.ID
			for _, k := range keys {
				if strings.HasPrefix(k.ID.String(), args[0]) {
					match = append(match, k.ID)
				}
			}
			if len(match) != 1 {
				return fmt.Errorf("key %q matches %d key files", args[0], len(match))
			}
			if err := repo.RemoveKey(cmd.Context(), match[0]); err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"removed": match[0]})
			}
			g.printf("removed key %s\n", match[0].Short())
			return nil
		},
	}
	cmd.AddCommand(list, add, remove)
	return cmd
}
