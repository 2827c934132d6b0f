package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest/guestproto"
)

// systemdPaths are where an image's systemd may be; /sbin/init is not
// looked at, since it may be anything (busybox, sysvinit).
var systemdPaths = []string{"/lib/systemd/systemd", "/usr/lib/systemd/systemd"}

// agentUnit is the agent's unit, written to /run before systemd starts
// (the image is not touched: a runtime unit lives as long as the boot).
// It starts first (no default dependencies, before sysinit.target): the
// modules disk is mounted before udev and systemd-modules-load look for
// modules, and the network is up before any unit that uses it. Type
// notify holds sysinit.target until that is done; SSH and the ready line
// come after, without holding anything. KillMode=process: a restart of
// the agent does not end the commands users started through it.
const agentUnit = `[Unit]
Description=banger guest agent (SSH for banger, the work disk, the network)
Documentation=https://github.com/banger-dev/banger
DefaultDependencies=no
Before=sysinit.target systemd-udevd.service systemd-modules-load.service shutdown.target
Conflicts=shutdown.target
IgnoreOnIsolate=yes

[Service]
Type=notify
NotifyAccess=main
ExecStart=` + rootInit + ` ` + serviceFlag + `
Restart=always
RestartSec=1
KillMode=process
TimeoutStartSec=60
OOMScoreAdjust=-1000
`

// serviceFlag is the argument that tells the agent it runs under systemd.
const serviceFlag = "--systemd-service"

// IsService says whether the agent was started as systemd's service.
func IsService(args []string) bool {
	return len(args) > 1 && args[1] == serviceFlag
}

// findSystemd returns the image's systemd, "" when it has none.
func findSystemd() string {
	for _, p := range systemdPaths {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// handToSystemd makes the image's systemd PID 1, with the agent's unit
// in /run. /run is mounted here, before systemd, which keeps a /run it
// finds mounted (as it does an initramfs's). It returns only on failure,
// and then the agent goes on as the init system.
func handToSystemd() error {
	sd := findSystemd()
	if sd == "" {
		return fmt.Errorf("this image has no systemd (%s)", strings.Join(systemdPaths, " or "))
	}
	if err := os.MkdirAll("/run", 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil && !errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("mount /run: %w", err)
	}
	units := "/run/systemd/system"
	if err := os.MkdirAll(filepath.Join(units, "sysinit.target.wants"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(units, "banger-agent.service"), []byte(agentUnit), 0o644); err != nil {
		return err
	}
	if err := os.Symlink("../banger-agent.service", filepath.Join(units, "sysinit.target.wants", "banger-agent.service")); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	fmt.Printf("banger-agent: handing PID 1 to %s\n", sd)
	return unix.Exec(sd, []string{sd}, []string{"TERM=linux"})
}

// ServiceStage is the agent as banger-agent.service under systemd: what
// RootStage does, but for what systemd does itself (the pseudo file
// systems, cgroups, the image's services, power-off), and ready only
// once systemd has finished starting up, so that the first command finds
// the image's units up.
func ServiceStage() error {
	// The console, not the journal: the host reads the ready line there.
	console()
	setupModules()
	cmd := bringUp()
	r := newReaper()
	// The reaper takes every child's status: set up before the first
	// child (systemctl, a session) starts.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	if err := startSSH(cmd, r, func() {
		// systemd's own signal for a clean power-off (SIGRTMIN+4, 38
		// with glibc's SIGRTMIN of 34).
		unix.Kill(1, unix.Signal(38))
	}); err != nil {
		fmt.Fprintf(os.Stderr, "banger-agent: ssh: %v\n", err)
	}
	if err := sdNotify("READY=1"); err != nil {
		fmt.Fprintf(os.Stderr, "banger-agent: tell systemd: %v\n", err)
	}
	ready := make(chan string, 1)
	go func() { ready <- systemdState(r, guestproto.ServiceWait) }()
	for {
		select {
		case state := <-ready:
			fmt.Printf("%s: kernel %s, root %s, init %s (%s)\n", ReadyMarker, release(), rootMode(), guestproto.InitSystemd, state)
		case sig := <-sigs:
			if sig == syscall.SIGCHLD {
				r.reap()
				continue
			}
			// systemd stops the agent at shutdown: the power-off is its.
			return nil
		}
	}
}

// systemdState waits for systemd to finish starting up (up to d) and
// says how it ended: "running", or "degraded: UNIT, ..." naming the
// units that failed, or what it was still doing.
func systemdState(r *reaper, d time.Duration) string {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	state := strings.TrimSpace(systemctl(ctx, r, "is-system-running", "--wait"))
	if ctx.Err() != nil {
		return fmt.Sprintf("still starting after %s: %s", d, strings.TrimSpace(systemctl(context.Background(), r, "list-jobs", "--no-legend")))
	}
	if state == "degraded" {
		var names []string
		for _, l := range strings.Split(systemctl(context.Background(), r, "list-units", "--failed", "--plain", "--no-legend", "--no-pager"), "\n") {
			if f := strings.Fields(l); len(f) > 0 && len(names) < 8 {
				names = append(names, f[0])
			}
		}
		if len(names) > 0 {
			state += ": failed " + strings.Join(names, ", ")
		}
	}
	if state == "" {
		state = "unknown"
	}
	return state
}

// systemctl runs systemctl and returns its output, through the reaper,
// which owns every child's exit status.
func systemctl(ctx context.Context, r *reaper, args ...string) string {
	c := exec.Command("systemctl", args...)
	c.Env = []string{"PATH=" + rootPath, "SYSTEMD_COLORS=0"}
	var out strings.Builder
	c.Stdout = &out
	if err := c.Start(); err != nil {
		return err.Error()
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			c.Process.Kill()
		case <-done:
		}
	}()
	r.wait(c)
	close(done)
	return out.String()
}

// sdNotify sends a state to systemd over $NOTIFY_SOCKET.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return errors.New("no NOTIFY_SOCKET")
	}
	if path[0] == '@' {
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// mounted says whether dir is a mount point.
func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

func rootMode() string {
	var st unix.Statfs_t
	if unix.Statfs("/", &st) == nil && st.Flags&unix.ST_RDONLY != 0 {
		return "ro"
	}
	return "rw"
}
