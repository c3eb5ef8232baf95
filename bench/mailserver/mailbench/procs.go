package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procStats sums what a server's processes used: the server is a root
// process (mailvault serve, Postfix's master, Dovecot's master) and all its
// descendants.
type procStats struct {
	Processes int `json:"processes"`
	// HWMSumKB adds up every live process's peak RSS (VmHWM). Pages
	// shared between processes (libraries, Postfix's and Dovecot's
	// many small daemons) are counted once per process, so for a
	// multi-process server this overstates its memory; HWMMaxKB is the
	// largest single process.
	HWMSumKB   int64  `json:"hwm_sum_kb"`
	HWMMaxKB   int64  `json:"hwm_max_kb"`
	HWMMaxComm string `json:"hwm_max_comm"`
	// CPUSeconds is user+system time of the live processes plus that of
	// their exited, reaped children (cutime/cstime), so short-lived
	// workers (Postfix's smtpd, Dovecot's imap) are counted too.
	CPUSeconds float64 `json:"cpu_seconds"`
	// PSSSumKB is the proportional set size of all live processes added
	// up (smaps_rollup): shared pages are split between the processes
	// sharing them, so unlike HWMSumKB it is comparable between a
	// one-process and a many-process server. It is a current value;
	// with -watch, the largest sum seen while sampling.
	PSSSumKB int64 `json:"pss_sum_kb"`
	// Samples is how many times -watch sampled.
	Samples int `json:"samples,omitempty"`
}

// procsCmd prints procStats for the trees rooted at -pid; with -reset it
// first resets every process's peak RSS to its current RSS (clear_refs 5,
// Linux ≥ 4.0), so that the next reading is the peak of one phase. With
// -watch it samples until SIGTERM and prints the last sample with the
// largest PSS sum seen.
func procsCmd(fs *flag.FlagSet) func(context.Context) error {
	pids := fs.String("pid", "", "comma-separated root process IDs")
	reset := fs.Bool("reset", false, "reset the peak RSS of every process in the trees")
	watch := fs.Duration("watch", 0, "sample at this interval until SIGTERM (0: once)")
	return func(ctx context.Context) error {
		roots, err := parsePIDs(*pids)
		if err != nil {
			return err
		}
		if *reset {
			if err := resetHWM(roots); err != nil {
				return err
			}
		}
		st, err := treeStats(roots)
		if err != nil {
			return err
		}
		if *watch > 0 {
			st.Samples = 1
			t := time.NewTicker(*watch)
			defer t.Stop()
			for ctx.Err() == nil {
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				next, err := treeStats(roots)
				if err != nil {
					// The server stopped (the script is cleaning up):
					// report what was sampled while it ran.
					break
				}
				next.Samples = st.Samples + 1
				next.PSSSumKB = max(next.PSSSumKB, st.PSSSumKB)
				st = next
			}
		}
		return json.NewEncoder(os.Stdout).Encode(st)
	}
}

func parsePIDs(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p <= 0 {
			return nil, fmt.Errorf("bad process ID %q", f)
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-pid is required")
	}
	return out, nil
}

// procStat holds the fields of /proc/PID/stat we need (proc(5)).
type procStat struct {
	pid, ppid int
	comm      string
	ticks     int64 // utime+stime+cutime+cstime
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	// comm is in parentheses and may contain spaces: split after the last ')'.
	i, j := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if i < 0 || j < i {
		return procStat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[j+1:]))
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	st := procStat{pid: pid, comm: string(b[i+1 : j])}
	st.ppid, _ = strconv.Atoi(f[1])
	for _, k := range f[11:15] {
		v, _ := strconv.ParseInt(k, 10, 64)
		st.ticks += v
	}
	return st, nil
}

// descendants returns roots and every live process below them.
func descendants(roots []int) ([]procStat, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	all := map[int]procStat{}
	children := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readStat(pid)
		if err != nil {
			continue // exited meanwhile
		}
		all[pid] = st
		children[st.ppid] = append(children[st.ppid], pid)
	}
	var out []procStat
	seen := map[int]bool{}
	queue := append([]int(nil), roots...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		st, ok := all[p]
		if !ok || seen[p] {
			continue
		}
		seen[p] = true
		out = append(out, st)
		queue = append(queue, children[p]...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no live process among %v", roots)
	}
	return out, nil
}

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc on every
// architecture it runs on.
const clockTicks = 100

func treeStats(roots []int) (procStats, error) {
	ps, err := descendants(roots)
	if err != nil {
		return procStats{}, err
	}
	var st procStats
	var ticks int64
	for _, p := range ps {
		hwm, err := statusKB(p.pid, "VmHWM")
		if err != nil {
			continue // exited meanwhile
		}
		st.Processes++
		st.HWMSumKB += hwm
		if hwm > st.HWMMaxKB {
			st.HWMMaxKB, st.HWMMaxComm = hwm, p.comm
		}
		ticks += p.ticks
		if pss, err := rollupKB(p.pid, "Pss"); err == nil {
			st.PSSSumKB += pss
		}
	}
	st.CPUSeconds = float64(ticks) / clockTicks
	return st, nil
}

func statusKB(pid int, field string) (int64, error) {
	return procFileKB(pid, "status", field)
}

func rollupKB(pid int, field string) (int64, error) {
	return procFileKB(pid, "smaps_rollup", field)
}

// procFileKB reads a "Field:   123 kB" line of /proc/PID/NAME.
func procFileKB(pid int, name, field string) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), name))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, nil // kernel threads have no Vm fields
}

func resetHWM(roots []int) error {
	ps, err := descendants(roots)
	if err != nil {
		return err
	}
	for _, p := range ps {
		err := os.WriteFile(filepath.Join("/proc", strconv.Itoa(p.pid), "clear_refs"), []byte("5"), 0)
		if _, gone := os.Stat(filepath.Join("/proc", strconv.Itoa(p.pid))); err != nil && gone == nil {
			return fmt.Errorf("reset peak RSS of %d (%s): %w", p.pid, p.comm, err)
		}
	}
	return nil
}
