// Package targets reads the backup targets configuration — where the
// copies of the mail live, on what medium and where — and decides whether
// they satisfy the 3-2-1 rule: at least 3 copies of the data (the live
// mail counts as one), on at least 2 different media, at least 1 of them
// offsite.
//
// A target can carry its own snapshot retention (Target.Keep), which
// `mailvault forget --targets` applies to its repository.
//
// It only parses, validates and evaluates; opening repositories and
// listing snapshots is the caller's job (cmd/mailvault status and backup).
package targets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mailvault/mailvault/retention"
)

// Medium is the kind of storage a copy lives on. Two copies on the same
// medium share its failure modes (a bad batch of disks, a ZFS bug, an S3
// provider's outage), which is why the rule asks for two.
type Medium string

// The media a target can be on.
const (
	Disk Medium = "disk" // a local disk or array
	NAS  Medium = "nas"  // network-attached storage
	S3   Medium = "s3"   // object storage
	ZFS  Medium = "zfs"  // a ZFS pool (snapshots received by `zfs recv`)
)

// Location says whether a copy survives the loss of the site.
type Location string

// The locations.
const (
	Onsite  Location = "onsite"
	Offsite Location = "offsite"
)

// Live is the live mail: it is one of the three copies.
type Live struct {
	// Paths are the Maildir trees; when set, status checks they exist.
	Paths    []string `yaml:"paths"`
	Medium   Medium   `yaml:"medium"`   // default disk
	Location Location `yaml:"location"` // default onsite
}

// Target is one place the backups go.
type Target struct {
	Name string `yaml:"name"`
	// Repo is a repository location (a path or s3:...); ZFS instead names a
	// dataset whose newest "mailvault-" snapshot is the copy. Exactly one
	// is set.
	Repo     string   `yaml:"repo"`
	ZFS      string   `yaml:"zfs"`
	Medium   Medium   `yaml:"medium"`
	Location Location `yaml:"location"`
	// Primary is the repository `mailvault backup` writes; the others
	// receive copies of its snapshots.
	Primary bool `yaml:"primary"`
	// How to open the repository; none set means the global credentials
	// (--password-file, --identity, MAILVAULT_PASSWORD...).
	PasswordFile string `yaml:"password_file"`
	PasswordEnv  string `yaml:"password_env"` // name of a variable holding the passphrase
	Identity     string `yaml:"identity"`     // age identity file
	// MaxAge, when set, is the recovery point objective: a target whose
	// newest snapshot is older does not count as a copy.
	MaxAge time.Duration `yaml:"max_age"`
	// Keep is the snapshot retention `mailvault forget --targets` applies
	// to this repository (an offsite copy often keeps longer than the
	// local disk), e.g. {daily: 14, weekly: 8, monthly: 24, yearly: 7}.
	// None: forget leaves the repository alone.
	Keep *retention.Policy `yaml:"keep"`
}

// HasCredentials reports whether the target names its own credentials.
func (t Target) HasCredentials() bool {
	return t.PasswordFile != "" || t.PasswordEnv != "" || t.Identity != ""
}

// Config is a targets file.
type Config struct {
	Live    Live     `yaml:"live"`
	Targets []Target `yaml:"targets"`
}

// Load reads and validates a targets file. Relative paths in it (local
// repositories, password and identity files, live paths) are relative to
// the file's directory, so that the file means the same from any working
// directory.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("targets: %w", err)
	}
	c, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("targets %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("targets: %w", err)
	}
	c.resolve(filepath.Dir(abs))
	return c, nil
}

// Parse decodes and validates a targets file's YAML. Unknown keys are
// errors, so that a typo ("max-age") does not silently drop a setting.
func Parse(raw []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) validate() error {
	if c.Live.Medium == "" {
		c.Live.Medium = Disk
	}
	if c.Live.Location == "" {
		c.Live.Location = Onsite
	}
	if err := checkMedium(c.Live.Medium); err != nil {
		return fmt.Errorf("live: %w", err)
	}
	if err := checkLocation(c.Live.Location); err != nil {
		return fmt.Errorf("live: %w", err)
	}
	if len(c.Targets) == 0 {
		return errors.New("no targets")
	}
	names := map[string]bool{}
	places := map[string]string{}
	primaries := 0
	for i := range c.Targets {
		t := &c.Targets[i]
		if t.Name == "" {
			return fmt.Errorf("target %d: no name", i+1)
		}
		if names[t.Name] {
			return fmt.Errorf("target %q: the name is used twice", t.Name)
		}
		names[t.Name] = true
		switch {
		case t.Repo == "" && t.ZFS == "":
			return fmt.Errorf("target %q: give repo (a repository) or zfs (a dataset)", t.Name)
		case t.Repo != "" && t.ZFS != "":
			return fmt.Errorf("target %q: give repo or zfs, not both", t.Name)
		}
		if t.ZFS != "" {
			if t.Medium == "" {
				t.Medium = ZFS
			}
			if t.Medium != ZFS {
				return fmt.Errorf("target %q: a zfs dataset is on medium zfs, not %q", t.Name, t.Medium)
			}
			if t.Primary {
				return fmt.Errorf("target %q: the primary must be a repository, not a zfs dataset", t.Name)
			}
			if t.HasCredentials() {
				return fmt.Errorf("target %q: a zfs dataset takes no password or identity", t.Name)
			}
		}
		if t.Medium == "" {
			return fmt.Errorf("target %q: no medium (disk, nas, s3 or zfs)", t.Name)
		}
		if err := checkMedium(t.Medium); err != nil {
			return fmt.Errorf("target %q: %w", t.Name, err)
		}
		if t.Location == "" {
			return fmt.Errorf("target %q: no location (onsite or offsite)", t.Name)
		}
		if err := checkLocation(t.Location); err != nil {
			return fmt.Errorf("target %q: %w", t.Name, err)
		}
		if t.MaxAge < 0 {
			return fmt.Errorf("target %q: negative max_age", t.Name)
		}
		if t.Keep != nil {
			if t.ZFS != "" {
				// Its snapshots are ZFS's: `snapshot prune` keeps them.
				return fmt.Errorf("target %q: keep applies to repositories; a zfs dataset's snapshots are pruned by `mailvault snapshot prune`", t.Name)
			}
			if err := t.Keep.Validate(); err != nil {
				return fmt.Errorf("target %q: %w", t.Name, err)
			}
		}
		if t.PasswordFile != "" && t.PasswordEnv != "" {
			return fmt.Errorf("target %q: give password_file or password_env, not both", t.Name)
		}
		place := "repo " + t.Repo
		if t.ZFS != "" {
			place = "zfs " + t.ZFS
		}
		if other, dup := places[place]; dup {
			// The same place twice would count one copy as two.
			return fmt.Errorf("targets %q and %q are the same %s", other, t.Name, place)
		}
		places[place] = t.Name
		if t.Primary {
			primaries++
		}
	}
	if primaries > 1 {
		return errors.New("more than one target is primary")
	}
	return nil
}

func checkMedium(m Medium) error {
	switch m {
	case Disk, NAS, S3, ZFS:
		return nil
	}
	return fmt.Errorf("unknown medium %q (disk, nas, s3 or zfs)", m)
}

func checkLocation(l Location) error {
	switch l {
	case Onsite, Offsite:
		return nil
	}
	return fmt.Errorf("unknown location %q (onsite or offsite)", l)
}

// resolve makes relative paths relative to dir.
func (c *Config) resolve(dir string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	for i, p := range c.Live.Paths {
		c.Live.Paths[i] = abs(p)
	}
	for i := range c.Targets {
		t := &c.Targets[i]
		t.PasswordFile = abs(t.PasswordFile)
		t.Identity = abs(t.Identity)
		if t.Repo != "" && !isRemote(t.Repo) {
			t.Repo = abs(strings.TrimPrefix(t.Repo, "local:"))
		}
	}
}

// isRemote reports whether a repository location is not a local path
// (s3:..., or a scheme of the future).
func isRemote(loc string) bool {
	scheme, _, ok := strings.Cut(loc, ":")
	return ok && scheme != "local" && !strings.ContainsAny(scheme, `/\.`)
}

// Primary returns the primary target, if one is marked.
func (c *Config) Primary() (Target, bool) {
	for _, t := range c.Targets {
		if t.Primary {
			return t, true
		}
	}
	return Target{}, false
}

// Observed is what a look at a target found.
type Observed struct {
	Err       error     // it could not be reached or read
	Snapshots int       // how many snapshots it holds
	Newest    time.Time // the newest one's time
	// Bytes is what the copy takes: a repository's pack bytes, a ZFS
	// dataset's used bytes (its snapshots and descendants included).
	Bytes int64
}

// Counts reports whether a target with what was observed counts as a copy
// at now, and if not, why.
func (t Target) Counts(o Observed, now time.Time) (bool, string) {
	switch {
	case o.Err != nil:
		return false, "unreachable: " + o.Err.Error()
	case o.Snapshots == 0:
		return false, "no snapshots"
	case t.MaxAge > 0 && now.Sub(o.Newest) > t.MaxAge:
		return false, fmt.Sprintf("stale: newest snapshot is %s old (max_age %s)", Age(now.Sub(o.Newest)), t.MaxAge)
	}
	return true, ""
}

// Copy is one copy of the data for the rule: the live mail or a target
// that counts.
type Copy struct {
	Name     string
	Medium   Medium
	Location Location
}

// Verdict is the outcome of the 3-2-1 rule.
type Verdict struct {
	Holds    bool     `json:"holds"`
	Copies   int      `json:"copies"`
	Media    []Medium `json:"media"`
	Offsite  int      `json:"offsite"`
	Failures []string `json:"failures,omitempty"` // one line per rule that fails
}

// The rule's thresholds.
const (
	MinCopies  = 3
	MinMedia   = 2
	MinOffsite = 1
)

// Evaluate applies the 3-2-1 rule to the copies that count.
func Evaluate(copies []Copy) Verdict {
	v := Verdict{Copies: len(copies), Media: []Medium{}}
	seen := map[Medium]bool{}
	for _, c := range copies {
		if !seen[c.Medium] {
			seen[c.Medium] = true
			v.Media = append(v.Media, c.Medium)
		}
		if c.Location == Offsite {
			v.Offsite++
		}
	}
	sort.Slice(v.Media, func(i, j int) bool { return v.Media[i] < v.Media[j] })
	if v.Copies < MinCopies {
		v.Failures = append(v.Failures, fmt.Sprintf("only %d %s (need %d)", v.Copies, plural(v.Copies, "copy", "copies"), MinCopies))
	}
	if len(v.Media) < MinMedia {
		what := "no medium"
		if len(v.Media) == 1 {
			what = "only one medium (" + string(v.Media[0]) + ")"
		}
		v.Failures = append(v.Failures, fmt.Sprintf("%s (need %d)", what, MinMedia))
	}
	if v.Offsite < MinOffsite {
		v.Failures = append(v.Failures, "no offsite copy")
	}
	v.Holds = len(v.Failures) == 0
	return v
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Age formats a duration for people: "45s", "12m", "3h12m", "2d4h".
func Age(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}
