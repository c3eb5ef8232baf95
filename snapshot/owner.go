package snapshot

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Owner identifies the process that made a view (or holds a snapshot
// while sending it), so that what it leaves behind when it is killed can
// be told apart from what a live process still uses. It is recorded with
// everything a view creates: the ZFS user property ownerProperty on
// snapshots and clones (set atomically with their creation by "-o"), and
// an owner file beside each hardlink tree or clone mount directory.
type Owner struct {
	Host string
	PID  int
	// Start is the process's start time in clock ticks since boot
	// (field 22 of /proc/PID/stat): with Boot it tells a reused PID from
	// the owner.
	Start uint64
	// Boot is the kernel's boot ID (/proc/sys/kernel/random/boot_id): a
	// PID of an earlier boot is dead whatever runs under it now.
	Boot string
	// PidNS is the inode of the owner's PID namespace (/proc/self/ns/pid;
	// 0 when unknown, as in records of older versions). PID and start
	// time mean something only inside that namespace: an owner in a
	// container on this host has a PID that here names another process,
	// or none.
	PidNS uint64
}

// ownerFileSuffix ends the name of the file beside a directory a view
// made, recording its owner.
const ownerFileSuffix = ".owner"

// CurrentOwner describes this process.
func CurrentOwner() (Owner, error) {
	host, err := os.Hostname()
	if err != nil {
		return Owner{}, fmt.Errorf("snapshot: host name: %w", err)
	}
	o := Owner{Host: host, PID: os.Getpid()}
	// Without /proc (not Linux) the start time, boot ID and namespace
	// stay empty: such an owner is then only known dead when its PID is
	// free. /proc/self, not /proc/PID: a /proc mounted for another PID
	// namespace (unshare --pid without --mount-proc) shows another
	// process under our PID.
	o.Start, _ = procStatStart("self")
	o.Boot = bootID()
	o.PidNS = pidNamespace()
	return o, nil
}

// String is the recorded form: "host=H pid=P start=S boot=B pidns=N".
// Host names hold neither spaces nor '='.
func (o Owner) String() string {
	return fmt.Sprintf("host=%s pid=%d start=%d boot=%s pidns=%d", o.Host, o.PID, o.Start, o.Boot, o.PidNS)
}

// ParseOwner reads the recorded form.
func ParseOwner(s string) (Owner, error) {
	var o Owner
	seen := 0
	for _, f := range strings.Fields(s) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Owner{}, fmt.Errorf("snapshot: owner %q: field %q", s, f)
		}
		var err error
		switch k {
		case "host":
			o.Host = v
		case "pid":
			o.PID, err = strconv.Atoi(v)
		case "start":
			o.Start, err = strconv.ParseUint(v, 10, 64)
		case "boot":
			o.Boot = v
		case "pidns":
			o.PidNS, err = strconv.ParseUint(v, 10, 64)
			seen-- // optional: older records lack it
		default:
			continue // a later version's field
		}
		if err != nil {
			return Owner{}, fmt.Errorf("snapshot: owner %q: %w", s, err)
		}
		seen++
	}
	if o.Host == "" || o.PID <= 0 || seen < 4 {
		return Owner{}, fmt.Errorf("snapshot: owner %q: incomplete", s)
	}
	return o, nil
}

// Dead reports whether the owner is provably gone, and why. It is never
// provably gone when it ran on another host (the pool may be shared or
// imported elsewhere) or when its PID is alive with the same start time
// in the same boot.
//
// An owner of this host and boot that ran in another PID namespace (a
// container, "unshare --pid") is alive unless proven otherwise: its PID
// and start time cannot be checked from here, and a namespace we do not
// see (a sibling's, or our parent's) cannot be shown to be empty. Only a
// reboot proves it dead; until then what it left is kept (and can be
// removed by hand, or by a process in its namespace).
func (o Owner) Dead() (bool, string) {
	host, err := os.Hostname()
	if err != nil || host != o.Host {
		return false, "owned by host " + o.Host
	}
	if b := bootID(); b != "" && o.Boot != "" && b != o.Boot {
		return true, "owner ran in an earlier boot"
	}
	if ns := pidNamespace(); ns != 0 && o.PidNS != 0 && ns != o.PidNS {
		return false, fmt.Sprintf("owner pid %d ran in another PID namespace (%d); not provably dead before a reboot", o.PID, o.PidNS)
	}
	// kill(pid, 0) tests existence without a signal (POSIX).
	if err := syscall.Kill(o.PID, 0); errors.Is(err, syscall.ESRCH) {
		return true, fmt.Sprintf("owner pid %d is not running", o.PID)
	}
	// The start time is only comparable when /proc is our namespace's
	// (else /proc/PID is another process than the PID kill reached).
	if start, err := procStatStart(strconv.Itoa(o.PID)); err == nil && o.Start != 0 && procIsOurs() && start != o.Start {
		return true, fmt.Sprintf("pid %d is another process now", o.PID)
	}
	return false, fmt.Sprintf("owner pid %d is running", o.PID)
}

// pidNamespace returns the inode of this process's PID namespace, 0 if
// unknown (no /proc). Two processes are in one namespace when the
// inodes (of the one nsfs) are equal (namespaces(7)).
func pidNamespace() uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/pid", &st); err != nil {
		return 0
	}
	return st.Ino
}

// procIsOurs reports whether /proc shows PIDs as this process sees them:
// /proc/self/stat's first field is the PID in /proc's namespace.
func procIsOurs() bool {
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return false
	}
	pid, _, _ := strings.Cut(string(raw), " ")
	return pid == strconv.Itoa(os.Getpid())
}

func bootID() string {
	raw, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(raw))
}

// procStatStart reads a process's start time from /proc/PID/stat
// (proc(5); pid is a number or "self"): field 22, counted after the
// command name, which is in parentheses and may itself hold spaces and
// parentheses.
func procStatStart(pid string) (uint64, error) {
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("snapshot: /proc/%s/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("snapshot: /proc/%s/stat: %d fields", pid, len(f)+2)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Leftover is something a killed process left behind, found by a
// cleanup.
type Leftover struct {
	// Kind is "link-tree", "clone", "clone-dir", "snapshot", "send-hold"
	// or "partial-receive".
	Kind  string `json:"kind"`
	Name  string `json:"name"`
	Owner string `json:"owner"`
	// Action is what the cleanup did: "removed", "destroyed",
	// "released" (a kept snapshot lost its view's hold), "discarded" (ZFS
	// discarded an interrupted receive itself while the cleanup waited),
	// or "kept" with the reason in Reason.
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
	Err    string `json:"error,omitempty"`
}

// createOwned creates dir together with its owner file, the owner file
// first (O_EXCL), so that a crash never leaves an unmarked directory of
// ours; dir must not exist.
func createOwned(dir string, o Owner) error {
	marker := dir + ownerFileSuffix
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	_, err = f.WriteString(o.String() + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Mkdir(dir, 0o700)
	}
	if err != nil {
		os.Remove(marker)
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// removeOwned removes dir (with everything in it when all, else only if
// empty) and then its owner file.
func removeOwned(dir string, all bool) error {
	rm := os.Remove
	if all {
		rm = os.RemoveAll
	}
	if err := rm(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("snapshot: remove %s: %w", dir, err)
	}
	if err := os.Remove(dir + ownerFileSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("snapshot: %w", err)
	}
	return nil
}

// cleanOwnedDirs removes the directories in parent whose names match and
// whose owner file names a dead owner: hardlink trees (all:
// with their content) or clone mount directories (not all: only if
// empty, so that a clone still mounted there is never emptied). A
// directory without an owner file is not known to be ours and is left
// alone.
func cleanOwnedDirs(parent string, match func(name string) bool, kind string, all bool) []Leftover {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var out []Leftover
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ownerFileSuffix)
		if !ok || !match(name) || !e.Type().IsRegular() {
			continue
		}
		dir := parent + string(os.PathSeparator) + name
		raw, err := os.ReadFile(dir + ownerFileSuffix)
		if err != nil {
			continue
		}
		lo := Leftover{Kind: kind, Name: dir, Owner: strings.TrimSpace(string(raw))}
		o, err := ParseOwner(lo.Owner)
		if err != nil {
			continue
		}
		dead, why := o.Dead()
		if !dead {
			continue // in use by a live process, or not provably dead
		}
		lo.Reason, lo.Action = why, "removed"
		if err := removeOwned(dir, all); err != nil {
			lo.Action, lo.Err = "kept", err.Error()
		}
		out = append(out, lo)
	}
	return out
}
