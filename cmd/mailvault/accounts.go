package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mailvault/mailvault/mailserver"
	"github.com/mailvault/mailvault/mailserver/audit"
	"github.com/mailvault/mailvault/mailserver/auth"
	"github.com/mailvault/mailvault/mailserver/control"
)

// openData opens the data directory named by --data for an admin command.
func openData(dir string) (*mailserver.Data, error) {
	return mailserver.OpenData(dir, auth.Options{})
}

// openDataConfig opens the data directory for a command that makes
// password hashes: with the server's configuration (file, environment,
// then --data), so that new hashes get its auth.argon2 cost and the data
// directory is the server's.
func openDataConfig(cmd *cobra.Command, file, dir string) (*mailserver.Data, error) {
	f := cmd.Flag("data")
	cfg, err := loadConfig(file, os.Getenv, dir, f != nil && f.Changed, "")
	if err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return mailserver.OpenData(cfg.DataDir, auth.Options{Params: cfg.Auth.Argon2.Params()})
}

// adminAudit records an admin action in the data directory's audit log.
func adminAudit(ctx context.Context, d *mailserver.Data, action, target string, err error) error {
	actor := "unknown"
	if u, uerr := user.Current(); uerr == nil {
		actor = u.Username
	}
	ev := audit.Event{Kind: audit.KindAdmin, Action: action, User: target, Protocol: "cli", Success: err == nil, Detail: "by os user " + actor}
	if err != nil {
		ev.Detail += ": " + err.Error()
	}
	if aerr := d.Audit.Record(ctx, ev); aerr != nil {
		return errors.Join(err, fmt.Errorf("audit: %w", aerr))
	}
	return err
}

// adminAuditDetail is adminAudit with more detail (what a removal took
// with it).
func adminAuditDetail(ctx context.Context, d *mailserver.Data, action, target, detail string, err error) error {
	actor := "unknown"
	if u, uerr := user.Current(); uerr == nil {
		actor = u.Username
	}
	ev := audit.Event{Kind: audit.KindAdmin, Action: action, User: target, Protocol: "cli", Success: err == nil, Detail: "by os user " + actor}
	if detail != "" {
		ev.Detail += "; " + detail
	}
	if err != nil {
		ev.Detail += ": " + err.Error()
	}
	if aerr := d.Audit.Record(ctx, ev); aerr != nil {
		return errors.Join(err, fmt.Errorf("audit: %w", aerr))
	}
	return err
}

// flagOn says whether a boolean flag of the root (--json, --quiet) is set
// for cmd; false when cmd runs without the root (as in tests).
func flagOn(cmd *cobra.Command, name string) bool {
	f := cmd.Flag(name)
	return f != nil && f.Value.String() == "true"
}

// done reports an admin command's success: v as JSON with --json, else the
// line (unless --quiet).
func done(cmd *cobra.Command, v any, format string, args ...any) error {
	if flagOn(cmd, "json") {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	if !flagOn(cmd, "quiet") {
		fmt.Fprintf(cmd.OutOrStdout(), format+"\n", args...)
	}
	return nil
}

// readPassword reads a password from stdin's first line (--password-stdin)
// or, on a terminal, prompts twice without echo.
func readPassword(cmd *cobra.Command, fromStdin bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return "", fmt.Errorf("%w: reading password from stdin: %v", errUsage, err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	f, ok := cmd.InOrStdin().(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", fmt.Errorf("%w: no terminal to prompt for a password; use --password-stdin", errUsage)
	}
	fmt.Fprint(cmd.ErrOrStderr(), "Password: ")
	p1, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(cmd.ErrOrStderr())
	if err != nil {
		return "", err
	}
	fmt.Fprint(cmd.ErrOrStderr(), "Repeat password: ")
	p2, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(cmd.ErrOrStderr())
	if err != nil {
		return "", err
	}
	if string(p1) != string(p2) {
		return "", fmt.Errorf("%w: passwords differ", errUsage)
	}
	return string(p1), nil
}

func addDataFlag(cmd *cobra.Command, dir *string) {
	cmd.PersistentFlags().StringVar(dir, "data", dataDirDefault(), "data directory (env MAILVAULT_DATA)")
}

func newDomainCmd() *cobra.Command {
	var dir string
	var force bool
	cmd := &cobra.Command{Use: "domain", Short: "Manage the domains the mail server accepts mail for"}
	addDataFlag(cmd, &dir)
	del := &cobra.Command{
		Use:   "del DOMAIN",
		Short: "Remove a local domain (refused while it has users or aliases, unless --force)",
		Long: `Remove a local domain: the server stops accepting mail for it at once
(a running server re-reads the accounts file when it changes).

While users or aliases of the domain exist it is refused (exit 1) and they
are listed: remove them first ("mailvault user del", "mailvault user alias
del"), or give --force to remove them with the domain. Mail stays on disk
either way, in DATA/mail/DOMAIN, for a backup or a later "domain add".`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openData(dir)
			if err != nil {
				return err
			}
			defer d.Close()
			rm, err := d.Accounts.DeleteDomain(cmd.Context(), args[0], force)
			detail := ""
			if force && err == nil {
				detail = fmt.Sprintf("--force: %d users and %d aliases removed with it", len(rm.Users), len(rm.Aliases))
			}
			if err := adminAuditDetail(cmd.Context(), d, "domain.del", args[0], detail, err); err != nil {
				if errors.Is(err, auth.ErrInUse) {
					return fmt.Errorf("%w\n  users: %s\n  aliases: %s\nremove them first, or use --force to remove them with the domain (their mail stays on disk)",
						err, listOrNone(rm.Users), listOrNone(rm.Aliases))
				}
				return err
			}
			mail := filepath.Join(dir, "mail", rm.Domain)
			out := map[string]any{"domain": rm.Domain, "deleted": true, "users_deleted": rm.Users, "aliases_deleted": rm.Aliases, "mail_left_in": mail}
			msg := "domain " + rm.Domain + " deleted"
			if len(rm.Users)+len(rm.Aliases) > 0 {
				msg += fmt.Sprintf(" with its users (%s) and aliases (%s); their mail stays in %s", listOrNone(rm.Users), listOrNone(rm.Aliases), mail)
			}
			return done(cmd, out, "%s", msg)
		},
	}
	del.Flags().BoolVar(&force, "force", false, "also remove the domain's users and aliases (their mail stays on disk)")
	cmd.AddCommand(&cobra.Command{
		Use:   "add DOMAIN",
		Short: "Add a local domain",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openData(dir)
			if err != nil {
				return err
			}
			defer d.Close()
			err = d.Accounts.AddDomain(cmd.Context(), args[0])
			if err := adminAudit(cmd.Context(), d, "domain.add", args[0], err); err != nil {
				return err
			}
			name, _ := auth.NormalizeDomain(args[0])
			return done(cmd, map[string]any{"domain": name, "added": true}, "domain %s added", name)
		},
	}, del, &cobra.Command{
		Use:   "list",
		Short: "List local domains",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := openData(dir)
			if err != nil {
				return err
			}
			defer d.Close()
			ds, err := d.Accounts.Domains(cmd.Context())
			if err != nil {
				return err
			}
			if flagOn(cmd, "json") {
				return done(cmd, append([]auth.Domain{}, ds...), "")
			}
			for _, x := range ds {
				fmt.Fprintln(cmd.OutOrStdout(), x.Name)
			}
			return nil
		},
	})
	return cmd
}

func listOrNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}

func newUserCmd() *cobra.Command {
	var dir, configFile string
	cmd := &cobra.Command{Use: "user", Short: "Manage mail users, aliases and app passwords"}
	addDataFlag(cmd, &dir)
	cmd.PersistentFlags().StringVarP(&configFile, "config", "c", os.Getenv("MAILVAULT_CONFIG"),
		"the server's YAML configuration file, for data_dir and the auth.argon2 cost of new password hashes (env MAILVAULT_CONFIG)")

	withData := func(fn func(cmd *cobra.Command, d *mailserver.Data, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			d, err := openDataConfig(cmd, configFile, dir)
			if err != nil {
				return err
			}
			defer d.Close()
			return fn(cmd, d, args)
		}
	}

	var stdinPw bool
	var role string
	add := &cobra.Command{
		Use:   "add ADDRESS",
		Short: "Add a user (its domain must exist)",
		Args:  cobra.ExactArgs(1),
		RunE: withData(func(cmd *cobra.Command, d *mailserver.Data, args []string) error {
			r, err := auth.ParseRole(role)
			if err != nil {
				return fmt.Errorf("%w: %v", errUsage, err)
			}
			pw, err := readPassword(cmd, stdinPw)
			if err != nil {
				return err
			}
			err = d.Accounts.AddUser(cmd.Context(), args[0], pw, r)
			if err := adminAudit(cmd.Context(), d, "user.add", args[0], err); err != nil {
				return err
			}
			u, err := d.Accounts.LookupUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return done(cmd, map[string]any{"user": u.Address, "role": u.Role, "added": true},
				"user %s added (role %s); it logs in with its full address", u.Address, u.Role)
		}),
	}
	add.Flags().BoolVar(&stdinPw, "password-stdin", false, "read the password from the first line of stdin")
	add.Flags().StringVar(&role, "role", "user", "role: user, admin or compliance")

	passwd := &cobra.Command{
		Use:   "passwd ADDRESS",
		Short: "Set a user's password",
		Args:  cobra.ExactArgs(1),
		RunE: withData(func(cmd *cobra.Command, d *mailserver.Data, args []string) error {
			pw, err := readPassword(cmd, stdinPw)
			if err != nil {
				return err
			}
			err = d.Accounts.SetPassword(cmd.Context(), args[0], pw)
			if err := adminAudit(cmd.Context(), d, "user.passwd", args[0], err); err != nil {
				return err
			}
			a, _ := auth.NormalizeAddress(args[0])
			return done(cmd, map[string]any{"user": a, "password_changed": true}, "password of %s changed", a)
		}),
	}
	passwd.Flags().BoolVar(&stdinPw, "password-stdin", false, "read the password from the first line of stdin")

	del := &cobra.Command{
		Use:   "del ADDRESS",
		Short: "Delete a user (their mail stays on disk)",
		Args:  cobra.ExactArgs(1),
		RunE: withData(func(cmd *cobra.Command, d *mailserver.Data, args []string) error {
			err := d.Accounts.DeleteUser(cmd.Context(), args[0])
			if err := adminAudit(cmd.Context(), d, "user.del", args[0], err); err != nil {
				return err
			}
			a, _ := auth.NormalizeAddress(args[0])
			return done(cmd, map[string]any{"user": a, "deleted": true}, "user %s deleted (its mail stays on disk)", a)
		}),
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List users",
		Args:  cobra.NoArgs,
		RunE: withData(func(cmd *cobra.Command, d *mailserver.Data, args []string) error {
			us, err := d.Accounts.Users(cmd.Context())
			if err != nil {
				return err
			}
			if flagOn(cmd, "json") {
				type row struct {
					Address      string    `json:"address"`
					Role         auth.Role `json:"role"`
					AppPasswords []string  `json:"app_passwords"`
					Disabled     bool      `json:"disabled"`
					Created      time.Time `json:"created"`
				}
				rows := []row{}
				for _, u := range us {
					r := row{Address: u.Address, Role: u.Role, AppPasswords: []string{}, Disabled: u.Disabled, Created: u.Created}
					for _, a := range u.AppPasswords {
						r.AppPasswords = append(r.AppPasswords, a.Name) // never the hashes
					}
					rows = append(rows, r)
				}
				return done(cmd, rows, "")
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ADDRESS\tROLE\tAPP PASSWORDS\tCREATED")
			for _, u := range us {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", u.Address, u.Role, len(u.AppPasswords), u.Created.Format("2006-01-02"))
			}
			return tw.Flush()
		}),
	}

	alias := &cobra.Command{Use: "alias", Short: "Manage aliases (mail to the alias goes to its targets, who may send as it)"}
	alias.AddCommand(&cobra.Command{
		Use:  "add ALIAS TARGET...",
		Args: cobra.MinimumNArgs(2),
		RunE: withData(func(cmd *cobra.Command, d *mailserver.Data, args []string) error {
			err := d.Accounts.AddAlias(cmd.Context(), args[0], args[1:]...)
			if err := adminAudit(cmd.Context(), d, "alias.add", args[0], err); err != nil {
				return err
			}
			a, _ := auth.NormalizeAddress(args[0])
			return done(cmd, map[string]any{"alias": a, "targets": args[1:], "added": true}, "alias %s added", a)
		}),
	}, &cobra.Command{
		Use:  "del ALIAS",
		Args: cobra.ExactArgs(1),
		RunE: withData(func(cmd *cobra.Command, d *mailserver.Data, args []string) error {
			err := d.Accounts.RemoveAlias(cmd.Context(), args[0])
			if err := adminAudit(cmd.Context(), d, "alias.del", args[0], err); err != nil {
				return err
			}
			a, _ := auth.NormalizeAddress(args[0])
			return done(cmd, map[string]any{"alias": a, "deleted": true}, "alias %s deleted", a)
		}),
	}, &cobra.Command{
		Use:  "list",
		Args: cobra.NoArgs,
		RunE: withData(func(cmd *cobra.Command, d *mailserver.Data, args []string) error {
			as, err := d.Accounts.Aliases(cmd.Context())
			if err != nil {
				return err
			}
			if flagOn(cmd, "json") {
				return done(cmd, append([]auth.Alias{}, as...), "")
			}
			for _, a := range as {
				fmt.Fprintf(cmd.OutOrStdout(), "%s -> %s\n", a.Address, strings.Join(a.Targets, ", "))
			}
			return nil
		}),
	})

	app := &cobra.Command{Use: "app-password", Short: "Manage a user's app passwords (one per client, revocable alone)"}
	app.AddCommand(&cobra.Command{
		Use:   "add ADDRESS NAME",
		Short: "Create an app password and print it once",
		Args:  cobra.ExactArgs(2),
		RunE: withData(func(cmd *cobra.Command, d *mailserver.Data, args []string) error {
			secret, err := d.Accounts.AddAppPassword(cmd.Context(), args[0], args[1])
			if err := adminAudit(cmd.Context(), d, "app-password.add", args[0], err); err != nil {
				return err
			}
			if flagOn(cmd, "json") {
				return done(cmd, map[string]any{"user": args[0], "name": args[1], "password": secret}, "")
			}
			fmt.Fprintln(cmd.OutOrStdout(), secret)
			return nil
		}),
	}, &cobra.Command{
		Use:  "del ADDRESS NAME",
		Args: cobra.ExactArgs(2),
		RunE: withData(func(cmd *cobra.Command, d *mailserver.Data, args []string) error {
			err := d.Accounts.RevokeAppPassword(cmd.Context(), args[0], args[1])
			if err := adminAudit(cmd.Context(), d, "app-password.del", args[0], err); err != nil {
				return err
			}
			return done(cmd, map[string]any{"user": args[0], "name": args[1], "deleted": true}, "app password %s of %s revoked", args[1], args[0])
		}),
	})

	var unlockIPs []string
	unlock := &cobra.Command{
		Use:   "unlock [ADDRESS] [--ip IP]...",
		Short: "Lift a login lockout in the running server",
		Long: `Lift the login lockout of ADDRESS (and of each --ip) in the running server,
forgetting the failed logins it counted.

Every protocol (SMTP submission, IMAP, POP3) counts failed logins per
account name and per client IP (IPv6: per /64). After auth.account_failures
failures of one name (default 5), or auth.ip_failures from one IP (default
20), logins of that name, or from that IP, are refused for
auth.lock_duration (default 15m), with the right password too; each
failure is answered after a delay doubling from auth.base_delay (250ms) to
auth.max_delay (8s). Counts are forgotten an hour after the last failure,
and a successful login forgets its account's count. A user who is still
refused after "unlock ADDRESS" may be behind a locked IP: see the audit
log ("locked out" lines name the IP) and unlock it with --ip.

Lockouts live in the running server's memory only, so this talks to it
through DATA/control.sock (the server's user or root only); a restart lifts
them all. With no server running there is nothing to lift. The server
records each unlock in the audit log.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && len(unlockIPs) == 0 {
				return fmt.Errorf("%w: name an ADDRESS or an --ip", errUsage)
			}
			f := cmd.Flag("data")
			cfg, err := loadConfig(configFile, os.Getenv, dir, f != nil && f.Changed, "")
			if err != nil {
				return err
			}
			c, err := control.Dial(cmd.Context(), cfg.DataDir)
			if errors.Is(err, control.ErrNotRunning) {
				fmt.Fprintf(cmd.ErrOrStderr(), "no mailvault serve runs on %s: nothing is locked out (lockouts live in the running server's memory and end with it)\n", cfg.DataDir)
				return done(cmd, map[string]any{"server_running": false, "unlocked": []control.Lockout{}}, "nothing to unlock")
			}
			if err != nil {
				return err
			}
			defer c.Close()
			type key struct {
				name string
				ip   bool
			}
			var keys []key
			if len(args) == 1 {
				// The server counts the name as tried, lower-cased: a
				// name that is no address is counted too, and one with a
				// Unicode domain under that form, not the A-label one.
				keys = append(keys, key{args[0], false})
				if a, err := auth.NormalizeAddress(args[0]); err == nil && a != strings.ToLower(args[0]) {
					keys = append(keys, key{a, false})
				}
			}
			for _, ip := range unlockIPs {
				keys = append(keys, key{ip, true})
			}
			var res []control.Lockout
			var lines []string
			for _, k := range keys {
				l, err := c.Unlock(cmd.Context(), k.name, k.ip)
				if err != nil {
					return err
				}
				res = append(res, l)
				switch {
				case !l.LockedUntil.IsZero():
					lines = append(lines, fmt.Sprintf("%s: lockout lifted (%d failed logins; it would have lasted until %s)", l.Key, l.Failures, l.LockedUntil.UTC().Format("15:04:05 MST")))
				case l.Failures > 0:
					lines = append(lines, fmt.Sprintf("%s: was not locked out; %d failed logins forgotten", l.Key, l.Failures))
				default:
					lines = append(lines, fmt.Sprintf("%s: was not locked out (no failed logins counted)", l.Key))
				}
			}
			return done(cmd, map[string]any{"server_running": true, "unlocked": res}, "%s", strings.Join(lines, "\n"))
		},
	}
	unlock.Flags().StringArrayVar(&unlockIPs, "ip", nil, "also lift the lockout of this client IP (IPv6: its /64); repeatable")

	cmd.AddCommand(add, passwd, del, list, unlock, alias, app)
	return cmd
}

func newAuditCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{Use: "audit", Short: "Inspect the mail server's audit log"}
	addDataFlag(cmd, &dir)
	var expectHead string
	verify := &cobra.Command{
		Use:   "verify [FILE]",
		Short: "Check the audit log's hash chain; report the first bad line",
		Long: `Check the hash chain of the audit log (DIR/audit.jsonl, or FILE).

An edited, inserted, reordered or removed line is reported by number and the
command exits with status 13. Lines cut off the end leave a valid but
shorter chain: keep the printed head elsewhere and pass it to --expect-head
to detect that.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := mailserver.AuditPath(dir)
			if len(args) == 1 {
				path = args[0]
			}
			rep, err := audit.Verify(path)
			var ve *audit.VerifyError
			if errors.As(err, &ve) {
				return withCode(exitCheckFailed, err)
			}
			if err != nil {
				return err
			}
			if expectHead != "" && !strings.EqualFold(expectHead, rep.Head) {
				// The expected head may be that of an earlier, shorter log.
				return withCode(exitCheckFailed, fmt.Errorf("audit: head %s is not the expected %s (lines removed from the end, or the log moved on)", rep.Head, expectHead))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d lines, head %s\n", rep.Lines, rep.Head)
			return nil
		},
	}
	verify.Flags().StringVar(&expectHead, "expect-head", "", "fail unless the last line's hash is this")
	cmd.AddCommand(verify)
	return cmd
}
