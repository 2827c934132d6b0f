package vmm

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Process identifies a VMM process across daemon restarts. The start time
// (in clock ticks since boot, from /proc/PID/stat) tells a live VMM from
// an unrelated process that got the same PID later.
type Process struct {
	PID       int
	StartTime uint64
}

// ProcessOf returns the Process for a running PID.
func ProcessOf(pid int) (Process, error) {
	st, _, err := procStat(pid)
	if err != nil {
		return Process{}, err
	}
	return Process{PID: pid, StartTime: st}, nil
}

// procStat reads a process's start time and state from /proc/PID/stat.
func procStat(pid int) (start uint64, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields after it start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 (starttime) is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, f[0][0], err
}

// Alive says whether p is still the same running process. A zombie is
// not alive: it has exited and only waits for its parent. But a killed
// process's main thread turns zombie before its other threads are gone,
// and until the last of them is, its files (and qemu's locks on its
// disks) stay open: such a process is still alive.
func (p Process) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	start, state, err := procStat(p.PID)
	if err != nil || start != p.StartTime || state == 'X' {
		return false
	}
	if state == 'Z' {
		tasks, err := os.ReadDir("/proc/" + strconv.Itoa(p.PID) + "/task")
		return err == nil && len(tasks) > 1
	}
	return true
}

// Kill sends SIGKILL to p if it is still the same process.
func (p Process) Kill() error {
	if !p.Alive() {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill VMM process %d: %w", p.PID, err)
	}
	return nil
}

// UID is the real uid process pid runs as: a VMM's must not be root.
func UID(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
			return strconv.Atoi(f[1])
		}
	}
	return -1, fmt.Errorf("no Uid line in /proc/%d/status", pid)
}
