package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest/guestproto"
)

// Modprobe is the agent run as modprobe (by the kernel, for a module a
// mount or a device asks for, or by a user): it loads modules and what
// they need from /lib/modules/<release>, so an image without kmod loads
// modules all the same. It takes modprobe's usual forms: NAME [PARAM...],
// -a NAME..., -q, --; other options are accepted and ignored.
func Modprobe(args []string) int {
	quiet, all := false, false
	var words []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			words = append(words, args[i+1:]...)
			i = len(args)
		case a == "-q" || a == "--quiet":
			quiet = true
		case a == "-a" || a == "--all":
			all = true
		case a == "-r" || a == "--remove":
			fmt.Fprintln(os.Stderr, "modprobe: removing modules is not supported by banger's modprobe (rmmod is the kernel's delete_module)")
			return 1
		case strings.HasPrefix(a, "-"):
		default:
			words = append(words, a)
		}
	}
	if len(words) == 0 {
		fmt.Fprintln(os.Stderr, "usage: modprobe [-q] [-a] MODULE [PARAM=VALUE...]")
		return 1
	}
	names, params := words, ""
	if !all {
		names, params = words[:1], strings.Join(words[1:], " ")
	}
	idx, err := readModIndex("/lib/modules/" + release())
	if err != nil {
		if !quiet {
			fmt.Fprintf(os.Stderr, "modprobe: %v\n", err)
		}
		return 1
	}
	code := 0
	for _, n := range names {
		if err := loadResolved(idx, n, params); err != nil {
			if !quiet {
				fmt.Fprintf(os.Stderr, "modprobe: %v\n", err)
			}
			code = 1
		}
	}
	return code
}

func loadResolved(idx *modIndex, name, params string) error {
	files, err := idx.resolve(name)
	if err != nil {
		return err
	}
	for i, f := range files {
		p := ""
		if i == len(files)-1 {
			p = params
		}
		if err := insmod(filepath.Join(idx.dir, f), p); err != nil {
			return fmt.Errorf("load %s: %w", modName(f), err)
		}
	}
	return nil
}

// insmod loads one module file unless it is loaded already.
func insmod(file, params string) error {
	if _, err := os.Stat("/sys/module/" + modName(file) + "/initstate"); err == nil {
		return nil
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(file, ".ko") {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), params, flags); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// Lsmod is the agent run as lsmod: /proc/modules, as kmod's lsmod shows it.
func Lsmod() int {
	b, err := os.ReadFile("/proc/modules")
	if err != nil {
		fmt.Fprintf(os.Stderr, "lsmod: %v\n", err)
		return 1
	}
	fmt.Printf("%-19s %8s  %s\n", "Module", "Size", "Used by")
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		by := strings.TrimSuffix(strings.ReplaceAll(f[3], "-", ""), ",")
		fmt.Printf("%-19s %8s  %s %s\n", f[0], f[1], f[2], by)
	}
	return 0
}

func release() string {
	var uts unix.Utsname
	unix.Uname(&uts)
	return unix.ByteSliceToString(uts.Release[:])
}

// setupModules brings the kernel's modules disk, when the VM has one, to
// /lib/modules/<release>, makes the agent the kernel's module loader and
// an image's modprobe and lsmod where it has none, and makes the device
// nodes whose modules load on first open (/dev/fuse).
func setupModules() {
	rel := release()
	dev := findLabelled(guestproto.ModulesLabel)
	if dev == "" || mounted(modulesMount) {
		// No modules disk, or an agent restarted by systemd set it up.
		return
	}
	if err := os.MkdirAll(modulesMount, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "banger-agent: modules: %v\n", err)
		return
	}
	if err := unix.Mount(dev, modulesMount, "ext4", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		fmt.Fprintf(os.Stderr, "banger-agent: mount the modules disk %s: %v\n", dev, err)
		return
	}
	target := "/lib/modules/" + rel
	if _, err := os.Stat(filepath.Join(target, "modules.dep")); err != nil {
		// The image's own modules for this release, if it has them, win.
		if err := os.MkdirAll(target, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "banger-agent: modules: %v\n", err)
			return
		}
		if err := unix.Mount(modulesMount, target, "", unix.MS_BIND, ""); err != nil {
			fmt.Fprintf(os.Stderr, "banger-agent: modules at %s: %v\n", target, err)
			return
		}
	}
	self, err := os.Executable()
	if err != nil {
		self = rootInit
	}
	os.MkdirAll(helperBin, 0o755)
	for _, n := range []string{"modprobe", "lsmod"} {
		os.Symlink(self, filepath.Join(helperBin, n))
		if !onPath(n) {
			// The image has none: the agent's, where root's PATH finds
			// it (on the VM's own disk; the image is untouched).
			os.MkdirAll("/usr/local/sbin", 0o755)
			os.Symlink(self, filepath.Join("/usr/local/sbin", n))
		}
	}
	if err := os.WriteFile("/proc/sys/kernel/modprobe", []byte(filepath.Join(helperBin, "modprobe")), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "banger-agent: modules: %v\n", err)
	}
	staticNodes(target)
}

// staticNodes makes /dev nodes for modules.devname's devices ("fuse fuse
// c10:229"): opening one asks the kernel for its module.
func staticNodes(dir string) {
	eachLine(filepath.Join(dir, "modules.devname"), func(l string) {
		f := strings.Fields(l)
		if len(f) != 3 || len(f[2]) < 2 || strings.Contains(f[1], "..") {
			return
		}
		var major, minor uint32
		if _, err := fmt.Sscanf(f[2][1:], "%d:%d", &major, &minor); err != nil {
			return
		}
		mode := uint32(unix.S_IFCHR)
		if f[2][0] == 'b' {
			mode = unix.S_IFBLK
		}
		p := filepath.Join("/dev", f[1])
		if _, err := os.Lstat(p); err == nil {
			return
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		unix.Mknod(p, mode|0o600, int(unix.Mkdev(major, minor)))
		if f[1] == "fuse" {
			os.Chmod(p, 0o666)
		}
	})
}

// findLabelled returns the virtio disk whose ext4 label is label.
func findLabelled(label string) string {
	blocks, _ := filepath.Glob("/sys/block/vd*")
	for _, b := range blocks {
		dev := "/dev/" + filepath.Base(b)
		f, err := os.Open(dev)
		if err != nil {
			continue
		}
		sb := make([]byte, 1024)
		_, err = f.ReadAt(sb, 1024)
		f.Close()
		// ext4's superblock: magic 0xEF53 at 0x38, the label at 0x78.
		if err == nil && sb[0x38] == 0x53 && sb[0x39] == 0xEF && string(bytes.TrimRight(sb[0x78:0x88], "\x00")) == label {
			return dev
		}
	}
	return ""
}

// mountCgroups mounts the cgroup v2 hierarchy at /sys/fs/cgroup with
// every controller the kernel has enabled for its children, as a
// container runtime (dockerd, podman) expects of its host.
func mountCgroups() {
	dir := "/sys/fs/cgroup"
	os.MkdirAll(dir, 0o755)
	if err := unix.Mount("cgroup2", dir, "cgroup2", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "nsdelegate"); err != nil && !errors.Is(err, unix.EBUSY) {
		fmt.Fprintf(os.Stderr, "banger-agent: mount cgroup2: %v\n", err)
		return
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return
	}
	for _, c := range strings.Fields(string(b)) {
		os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0o644)
	}
}

// startServices starts the programs the image lists in ServicesFile, for
// an image without an init system of its own (dockerd in a Docker
// image), each in a session of its own, its output in /var/log/NAME.log,
// and waits for the sockets they serve. The guest says it is ready only
// then: a template's guest is saved with them up, and its clones wake
// with them.
func startServices() {
	var sockets []string
	eachLine(guestproto.ServicesFile, func(entry string) {
		name, socket, err := guestproto.ParseService(entry)
		if err != nil {
			fmt.Fprintf(os.Stderr, "banger-agent: %v\n", err)
			return
		}
		var prog string
		for _, dir := range strings.Split(rootPath, ":") {
			if st, err := os.Stat(filepath.Join(dir, name)); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				prog = filepath.Join(dir, name)
				break
			}
		}
		if prog == "" {
			fmt.Fprintf(os.Stderr, "banger-agent: service %s: not found on %s\n", name, rootPath)
			return
		}
		os.MkdirAll("/var/log", 0o755)
		log, err := os.OpenFile(filepath.Join("/var/log", name+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			fmt.Fprintf(os.Stderr, "banger-agent: service %s: %v\n", name, err)
			return
		}
		defer log.Close()
		cmd := exec.Command(prog)
		cmd.Dir = "/"
		cmd.Env = append(account{Name: "root", UID: 0, Home: "/root"}.env(), "TERM=dumb")
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "banger-agent: service %s: %v\n", name, err)
			return
		}
		fmt.Printf("banger-agent: started %s (pid %d)\n", name, cmd.Process.Pid)
		if socket != "" {
			sockets = append(sockets, socket)
		}
	})
	deadline := time.Now().Add(guestproto.ServiceWait)
	for _, sock := range sockets {
		for {
			c, err := net.DialTimeout("unix", sock, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "banger-agent: %s does not answer after %s; going on\n", sock, guestproto.ServiceWait)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// onPath says whether root's PATH has a program name.
func onPath(name string) bool {
	for _, dir := range strings.Split(rootPath, ":") {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}
