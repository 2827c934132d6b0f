package agent

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
	next := "/.banger/init"
	if _, err := os.Stat(next); err != nil {
		next = "/sbin/init"
	}
	return unix.Exec(next, []string{next}, os.Environ())
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
			return fmt.Errorf("root disk %s did not appear within %s", path, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// RootStage runs as PID 1 in the guest's root file system.
func RootStage() error {
	mountRoot()
	console()
	if b, err := os.ReadFile("/etc/hostname"); err == nil {
		unix.Sethostname([]byte(strings.TrimSpace(string(b))))
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	mode := "rw"
	var st unix.Statfs_t
	if unix.Statfs("/", &st) == nil && st.Flags&unix.ST_RDONLY != 0 {
		mode = "ro"
	}
	fmt.Printf("%s: kernel %s, root %s\n", ReadyMarker, unix.ByteSliceToString(uts.Release[:]), mode)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR2)
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			reap()
		default:
			// SIGTERM (or ctrl-alt-del's SIGINT, or SIGUSR2 as systemd
			// uses) asks for a clean power-off.
			fmt.Println("banger-agent: powering off")
			unix.Sync()
			return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		}
	}
	return nil
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

func reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}
