package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mailvault/mailvault/archive"
	"github.com/mailvault/mailvault/archive/local"
)

func newInitCmd(g *globals) *cobra.Command {
	var recipients []string
	var recipientsFile string
	var paramsFrom otherRepo
	var lockDays int
	var lockMode string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create a new repository",
		Long: `Create a new repository. Its secrets are wrapped for a passphrase
(MAILVAULT_PASSWORD, --password-file or a prompt) and/or age recipients
(--recipient age1..., --recipients-file), each in its own key file.

With --object-lock-days N (S3 only) the bucket is created with S3 Object
Lock and every file but lock files is written with retention of N days in
--object-lock-mode (governance: removable early only with the
s3:BypassGovernanceRetention permission; compliance: by no one). Run
"mailvault maintain" regularly to extend what is still needed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			be, err := g.backend()
			if err != nil {
				return err
			}
			var lock *archive.ObjectLock
			if lockDays != 0 || cmd.Flags().Changed("object-lock-mode") {
				lock = &archive.ObjectLock{Mode: archive.RetentionMode(lockMode), Days: lockDays}
				if err := lock.Validate(); err != nil {
					return fmt.Errorf("%w: --object-lock-days/--object-lock-mode: %v", errUsage, err)
				}
				if _, ok := be.(archive.ObjectLocker); !ok {
					return fmt.Errorf("%w: --object-lock-days needs an S3 repository: %s cannot make files immutable (root can delete any file)", errUsage, be.Location())
				}
			}
			if recipientsFile != "" {
				raw, err := os.ReadFile(recipientsFile)
				if err != nil {
					return fmt.Errorf("recipients file: %w", err)
				}
				for _, line := range strings.Split(string(raw), "\n") {
					if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
						recipients = append(recipients, line)
					}
				}
			}
			pw, err := g.password(len(recipients) == 0, true)
			if err != nil {
				return err
			}
			if lb, ok := be.(*local.Backend); ok {
				if err := lb.Create(); err != nil {
					return err
				}
			} else if c, ok := be.(interface{ Create(context.Context) error }); ok && lock == nil {
				if err := c.Create(cmd.Context()); err != nil {
					return err
				}
			}
			kr := archive.KeyRecipients{Passphrase: pw, Recipients: recipients}
			var id archive.ID
			if lock != nil {
				// Creates the bucket with Object Lock itself.
				var src *archive.Repository
				if paramsFrom.loc != "" {
					if src, err = paramsFrom.open(cmd.Context(), g); err != nil {
						return err
					}
				}
				id, err = archive.InitObjectLock(cmd.Context(), be, kr, *lock, src)
				if src != nil {
					src.Close()
				}
			} else if paramsFrom.loc != "" {
				src, oerr := paramsFrom.open(cmd.Context(), g)
				if oerr != nil {
					return oerr
				}
				id, err = archive.InitCopyParams(cmd.Context(), be, kr, src)
				src.Close()
			} else {
				id, err = archive.Init(cmd.Context(), be, kr)
			}
			if err != nil {
				return err
			}
			if g.json {
				return g.printJSON(map[string]any{"id": id, "repository": be.Location(), "object_lock": lock})
			}
			g.printf("created mailvault repository %s at %s\n", id.Short(), be.Location())
			if lock != nil {
				g.printf("Object Lock: every file is kept %d days (%s mode). Run `mailvault maintain` at least every %s (daily is best) to keep what is still needed locked.\n", lock.Days, lock.Mode, halfPeriod(*lock))
			}
			g.printf("Keep the password or identity safe: without it the data cannot be recovered.\n")
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&recipients, "recipient", nil, "age recipient (age1...) whose identity opens the repository; repeatable")
	cmd.Flags().StringVar(&recipientsFile, "recipients-file", "", "file of age recipients, one per line")
	cmd.Flags().StringVar(&paramsFrom.loc, "copy-params-from", "", "repository whose blob-ID key and chunker parameters the new one shares (for `mailvault copy`)")
	paramsFrom.flags(cmd)
	cmd.Flags().IntVar(&lockDays, "object-lock-days", 0, "S3 only: lock every repository file for this many days (S3 Object Lock)")
	cmd.Flags().StringVar(&lockMode, "object-lock-mode", string(archive.Governance), "object lock retention mode: governance or compliance")
	return cmd
}
