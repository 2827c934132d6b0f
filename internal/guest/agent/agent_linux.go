package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/kit/sshkey"
)

// InitStage runs as /init in banger's initramfs.
func InitStage() error {
	mountPseudo()
	console()
	b, _ := os.ReadFile("/proc/cmdline")
	cmd := ParseCmdline(string(b))
	if err := loadModules("/etc/banger/modules", cmd); err != nil {
		return err
	}
	root := cmd.Params["root"]
	if root == "" {
		root = "/dev/vda"
	}
	if err := waitFor(root, 10*time.Second); err != nil {
		return err
	}
	flags := uintptr(unix.MS_RDONLY)
	if _, rw := cmd.Params["rw"]; rw {
		flags = 0
	}
	if err := unix.Mount(root, "/newroot", "ext4", flags, ""); err != nil {
		return fmt.Errorf("mount root %s: %w", root, err)
	}
	if flags == 0 {
		if err := installSelf("/newroot" + rootInit); err != nil {
			fmt.Fprintf(os.Stderr, "banger-agent: install into root: %v\n", err)
		}
	}
	for _, d := range []string{"dev", "proc", "sys"} {
		os.MkdirAll("/newroot/"+d, 0o755)
		if err := unix.Mount("/"+d, "/newroot/"+d, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move /%s: %w", d, err)
		}
	}
	// switch_root: the initramfs is in memory and goes away with the
	// move; its files are not freed, which at a few MiB is acceptable.
	if err := os.Chdir("/newroot"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("switch root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	os.Chdir("/")
	next := rootInit
	if _, err := os.Stat(next); err != nil {
		next = "/sbin/init"
	}
	return unix.Exec(next, []string{next}, os.Environ())
}

// rootInit is where the agent lives in the root file system.
const rootInit = "/.banger/init"

// installSelf puts this agent at path, so that the root stage runs the
// agent that came with the host's banger even in an image finalized by an
// older one, or in one that never had it.
func installSelf(path string) error {
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		return err
	}
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, self) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, self, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func mountPseudo() {
	for _, m := range []struct{ src, dst, fstype string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			fmt.Fprintf(os.Stderr, "banger-agent: mount %s: %v\n", m.dst, err)
		}
	}
}

// console points stdio at /dev/console: the initramfs has no device
// nodes until devtmpfs is mounted.
func console() {
	f, err := os.OpenFile("/dev/console", os.O_RDWR, 0)
	if err != nil {
		return
	}
	for _, fd := range []int{0, 1, 2} {
		unix.Dup2(int(f.Fd()), fd)
	}
}

func loadModules(list string, cmd Cmdline) error {
	f, err := os.Open(list)
	if err != nil {
		return nil // a kernel without modules
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		path := strings.TrimSpace(sc.Text())
		if path == "" {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(path), ".ko")
		if i := strings.Index(name, "-"); i >= 0 {
			name = name[i+1:]
		}
		mf, err := os.Open(path)
		if err != nil {
			return err
		}
		err = unix.FinitModule(int(mf.Fd()), cmd.ModParams[name], 0)
		mf.Close()
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load module %s: %w", name, err)
		}
	}
	return sc.Err()
}

func waitFor(path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s", path, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// RootStage runs as PID 1 in the guest's root file system. With
// banger.init=systemd it hands PID 1 to the image's systemd, under which
// the agent runs again as a service (ServiceStage).
func RootStage() error {
	if !mounted("/proc") {
		// A boot without banger's initramfs: the kernel ran the agent.
		os.MkdirAll("/proc", 0o755)
		unix.Mount("proc", "/proc", "proc", 0, "")
	}
	if b, _ := os.ReadFile("/proc/cmdline"); ParseCmdline(string(b)).Params[guestproto.ParamInit] == guestproto.InitSystemd {
		err := handToSystemd()
		fmt.Fprintf(os.Stderr, "banger-agent: init %s: %v; banger's own init instead\n", guestproto.InitSystemd, err)
	}
	mountRoot()
	console()
	mountCgroups()
	setupModules()
	if b, err := os.ReadFile("/etc/hostname"); err == nil {
		unix.Sethostname([]byte(strings.TrimSpace(string(b))))
	}
	cmd := bringUp()
	r := newReaper()
	if err := startSSH(cmd, r, func() { unix.Kill(1, unix.SIGTERM) }); err != nil {
		fmt.Fprintf(os.Stderr, "banger-agent: ssh: %v\n", err)
	}
	startServices()
	fmt.Printf("%s: kernel %s, root %s\n", ReadyMarker, release(), rootMode())

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR2)
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			r.reap()
		default:
			// SIGTERM (or ctrl-alt-del's SIGINT, or SIGUSR2 as systemd
			// uses) asks for a clean power-off.
			fmt.Println("banger-agent: powering off")
			shutdown(r)
			return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		}
	}
	return nil
}

// bringUp does what the guest needs under either init, from the kernel
// command line it returns: root's home, the hostname, the work disk and
// the network.
func bringUp() Cmdline {
	// root's home: images without one (busybox) still get a working
	// directory for commands and a place for copies.
	os.MkdirAll("/root", 0o700)
	b, _ := os.ReadFile("/proc/cmdline")
	cmd := ParseCmdline(string(b))
	if name := cmd.Params[guestproto.ParamName]; name != "" {
		unix.Sethostname([]byte(name))
	}
	// An agent systemd restarted finds its work disk mounted.
	if dev := cmd.Params[guestproto.ParamWork]; dev != "" && !mounted(guestproto.WorkDir) {
		// Mounted before the ready line, so that the first command sees
		// it; the device may still be probing.
		if err := mountWork(dev); err != nil {
			fmt.Fprintf(os.Stderr, "banger-agent: %v\n", err)
		}
	}
	nw, err := NetworkFromCmdline(cmd)
	if err == nil {
		err = nw.Up()
	}
	if err == nil {
		err = nw.WriteResolver("/etc/resolv.conf")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "banger-agent: network: %v\n", err)
	}
	return cmd
}

// shutdown ends every process (SIGTERM, up to 2s, then SIGKILL), then
// leaves the file systems clean: /work unmounted and the root remounted
// read-only, so that their journals are written through and a check of
// the disks afterwards finds nothing to replay.
func shutdown(r *reaper) {
	unix.Kill(-1, unix.SIGTERM) // every process but PID 1
	for deadline := time.Now().Add(2 * time.Second); userProcesses() > 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		r.reap()
	}
	unix.Kill(-1, unix.SIGKILL)
	for deadline := time.Now().Add(time.Second); userProcesses() > 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		r.reap()
	}
	unix.Sync()
	if err := unix.Unmount(guestproto.WorkDir, 0); err != nil && err != unix.EINVAL {
		fmt.Fprintf(os.Stderr, "banger-agent: unmount %s: %v\n", guestproto.WorkDir, err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		fmt.Fprintf(os.Stderr, "banger-agent: remount / read-only: %v\n", err)
	}
	unix.Sync()
}

// userProcesses counts the processes other than PID 1 that are not
// kernel threads (those have no command line) and have not exited.
func userProcesses() int {
	dirs, _ := os.ReadDir("/proc")
	n := 0
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil || pid == 1 {
			continue
		}
		if b, err := os.ReadFile("/proc/" + d.Name() + "/cmdline"); err == nil && len(b) > 0 {
			n++
		}
	}
	return n
}

// startSSH serves SSH on banger.ssh_port (22) with a host key made at
// boot, whose fingerprint goes to the console for the host to pin;
// powerOff answers the host's power-off request.
func startSSH(cmd Cmdline, r *reaper, powerOff func()) error {
	host, err := hostKey(hostKeyPath)
	if err != nil {
		return err
	}
	keys, _ := os.ReadFile("/root/.ssh/authorized_keys")
	if enc := cmd.Params[guestproto.ParamKeys]; enc != "" {
		more, err := guestproto.DecodeKeys(enc)
		if err != nil {
			return err
		}
		keys = append(append(keys, '\n'), more...)
	}
	srv := NewSSHServer(host, ParseAuthorizedKeys(keys))
	srv.Wait = r.wait
	srv.PowerOff = powerOff
	srv.Lend = func(a guestproto.AuthSync) error { return lend(a, srv.Passwd) }
	srv.Identity = func(id guestproto.Identity) (ssh.Signer, []ssh.PublicKey, error) {
		return applyIdentity(id, hostKeyPath)
	}
	port := cmd.Params[guestproto.ParamSSHPort]
	if port == "" {
		port = "22"
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	fmt.Printf("%s%s\n", guestproto.HostKeyPrefix, ssh.FingerprintSHA256(host.PublicKey()))
	go srv.Serve(ln)
	return nil
}

// hostKeyPath is where the guest keeps its SSH host key.
const hostKeyPath = "/.banger/ssh_host_ed25519_key"

// hostKey loads the guest's SSH host key, making it on first boot. It is
// kept on the root disk so that a VM keeps its identity across restarts;
// a read-only root gets a fresh key each boot.
func hostKey(path string) (ssh.Signer, error) {
	if k, err := sshkey.LoadOrCreate(path, "banger guest"); err == nil {
		return k, nil
	}
	k, _, err := sshkey.Generate("banger guest")
	return k, err
}

func mountRoot() {
	for _, m := range []struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}{
		{"proc", "/proc", "proc", 0, ""},
		{"sysfs", "/sys", "sysfs", 0, ""},
		{"devtmpfs", "/dev", "devtmpfs", 0, ""},
		{"devpts", "/dev/pts", "devpts", 0, "gid=5,mode=620,ptmxmode=666"},
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=755"},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			fmt.Fprintf(os.Stderr, "banger-agent: mount %s: %v\n", m.dst, err)
		}
	}
}

// reaper reaps every child of PID 1, handing the statuses of the
// commands the agent started to whoever waits for them.
type reaper struct {
	mu      sync.Mutex
	waiting map[int]chan unix.WaitStatus // guarded by mu
	early   map[int]unix.WaitStatus      // guarded by mu: reaped before anyone waited
}

func newReaper() *reaper {
	return &reaper{waiting: map[int]chan unix.WaitStatus{}, early: map[int]unix.WaitStatus{}}
}

func (r *reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		r.mu.Lock()
		if ch, ok := r.waiting[pid]; ok {
			ch <- ws
			delete(r.waiting, pid)
		} else if len(r.early) < 4096 {
			// Orphans reparented to PID 1 land here too; the bound keeps
			// them from piling up.
			r.early[pid] = ws
		}
		r.mu.Unlock()
	}
}

// wait returns the exit code of a command the agent started.
func (r *reaper) wait(cmd *exec.Cmd) int {
	pid := cmd.Process.Pid
	r.mu.Lock()
	ws, done := r.early[pid]
	var ch chan unix.WaitStatus
	if done {
		delete(r.early, pid)
	} else {
		ch = make(chan unix.WaitStatus, 1)
		r.waiting[pid] = ch
	}
	r.mu.Unlock()
	if !done {
		ws = <-ch
	}
	// Wait fails (the status is gone) but releases the command's pipes.
	cmd.Wait()
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
