// Package doctor checks what banger needs on this host and says how to
// install what is missing.
package doctor

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/kit/config"
	"github.com/banger-dev/banger/internal/wire/api"
)

// Check is one finding.
type Check struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	Required bool   `json:"required"`
	Detail   string `json:"detail"`
	Fix      string `json:"fix,omitempty"`
}

// Host is how the checks look at the machine; tests replace it.
type Host struct {
	LookPath  func(string) (string, error)
	Stat      func(string) (fs.FileInfo, error)
	OpenRW    func(string) error
	FreeBytes func(string) (uint64, error)
	OSRelease func() map[string]string
}

// Real looks at this machine.
func Real() Host {
	return Host{
		LookPath: exec.LookPath,
		Stat:     os.Stat,
		OpenRW: func(p string) error {
			f, err := os.OpenFile(p, os.O_RDWR, 0)
			if err == nil {
				f.Close()
			}
			return err
		},
		FreeBytes: func(p string) (uint64, error) {
			var st unix.Statfs_t
			if err := unix.Statfs(p, &st); err != nil {
				return 0, err
			}
			return st.Bavail * uint64(st.Bsize), nil
		},
		OSRelease: readOSRelease,
	}
}

func readOSRelease() map[string]string {
	out := map[string]string{}
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if ok {
			out[k] = strings.Trim(v, `"'`)
		}
	}
	return out
}

// MinFreeBytes is the free space below which the state directory check fails.
const MinFreeBytes = 4 << 30

// packages names what provides each program, per package manager.
var packages = map[string]map[string]string{
	"qemu-system-x86_64": {"apt": "qemu-system-x86", "dnf": "qemu-system-x86-core", "pacman": "qemu-system-x86", "apk": "qemu-system-x86_64"},
	"qemu-img":           {"apt": "qemu-utils", "dnf": "qemu-img", "pacman": "qemu-img", "apk": "qemu-img"},
	"mkfs.ext4":          {"apt": "e2fsprogs", "dnf": "e2fsprogs", "pacman": "e2fsprogs", "apk": "e2fsprogs"},
	"e2fsck":             {"apt": "e2fsprogs", "dnf": "e2fsprogs", "pacman": "e2fsprogs", "apk": "e2fsprogs"},
	"resize2fs":          {"apt": "e2fsprogs", "dnf": "e2fsprogs", "pacman": "e2fsprogs", "apk": "e2fsprogs-extra"},
	"nft":                {"apt": "nftables", "dnf": "nftables", "pacman": "nftables", "apk": "nftables"},
	"ip":                 {"apt": "iproute2", "dnf": "iproute", "pacman": "iproute2", "apk": "iproute2"},
	"depmod":             {"apt": "kmod", "dnf": "kmod", "pacman": "kmod", "apk": "kmod"},
}

func installCmd(pm, prog string) string {
	pkg := packages[prog][pm]
	switch pm {
	case "apt":
		return "sudo apt-get install -y " + pkg
	case "dnf":
		return "sudo dnf install -y " + pkg
	case "pacman":
		return "sudo pacman -S " + pkg
	case "apk":
		return "sudo apk add " + pkg
	}
	return "install the package that provides " + prog
}

// packageManager picks the install command family from os-release.
func packageManager(osr map[string]string) string {
	ids := osr["ID"] + " " + osr["ID_LIKE"]
	switch {
	case strings.Contains(ids, "debian"), strings.Contains(ids, "ubuntu"):
		return "apt"
	case strings.Contains(ids, "fedora"), strings.Contains(ids, "rhel"), strings.Contains(ids, "centos"):
		return "dnf"
	case strings.Contains(ids, "arch"):
		return "pacman"
	case strings.Contains(ids, "alpine"):
		return "apk"
	}
	return ""
}

// Run checks the host. stateDir is where banger keeps its state.
func Run(h Host, stateDir string) []Check {
	pm := packageManager(h.OSRelease())
	var out []Check
	prog := func(name string, required bool, why string) {
		c := Check{Name: name, Required: required}
		if p, err := h.LookPath(name); err == nil {
			c.OK, c.Detail = true, p
		} else {
			c.Detail = "not found: " + why
			c.Fix = installCmd(pm, name)
		}
		out = append(out, c)
	}

	// Whether KVM works is the accelerator check's to say (a probe
	// guest); this one says only whether the device is there.
	kvm := Check{Name: "/dev/kvm", Required: false}
	switch _, err := h.Stat("/dev/kvm"); {
	case err != nil:
		kvm.Detail = "absent: VMs run under software emulation (TCG), several times slower"
		kvm.Fix = fixNoKVM
	default:
		if err := h.OpenRW("/dev/kvm"); err != nil {
			kvm.Detail = "present but not usable: " + err.Error()
			kvm.Fix = fixKVMAccess
		} else {
			kvm.OK, kvm.Detail = true, "present and opens (the accelerator check says whether KVM works)"
		}
	}
	out = append(out, kvm)

	prog("qemu-system-x86_64", true, "the qemu driver boots every VM when firecracker is absent")
	fc := Check{Name: "firecracker", Required: false}
	if p, err := h.LookPath("firecracker"); err == nil {
		fc.OK, fc.Detail = true, p
	} else {
		fc.Detail = "not found: a later driver, for hosts where KVM works (qemu runs every VM meanwhile)"
		fc.Fix = "download a release from https://github.com/firecracker-microvm/firecracker/releases and put firecracker (and jailer) on PATH"
	}
	out = append(out, fc)
	prog("qemu-img", true, "makes each VM's copy-on-write root disk (a qcow2 overlay over its image)")
	prog("mkfs.ext4", true, "builds image and work disks")
	prog("e2fsck", true, "checks disks")
	prog("resize2fs", true, "grows VM disks")

	prog("depmod", false, "indexes each kernel's modules for its guests (modprobe, Docker in a VM); without it guests get only what their kernel has built in")
	prog("passt", false, "gives guests the outside network without this host's loopback; without it they get no outside network")

	tun := Check{Name: "/dev/net/tun", Required: false}
	if _, err := h.Stat("/dev/net/tun"); err == nil {
		tun.OK, tun.Detail = true, "present"
	} else {
		tun.Detail = "absent: bridge networking needs it (user networking does not)"
		tun.Fix = "sudo modprobe tun"
	}
	out = append(out, tun)

	apt := Check{Name: "apt-get", Required: false}
	if p, err := h.LookPath("apt-get"); err == nil {
		apt.OK, apt.Detail = true, p+": catalog kernels can come from this host's package sources"
	} else {
		apt.Detail = "not found: catalog entries with an apt source will use their other sources"
	}
	out = append(out, apt)

	space := Check{Name: "free space", Required: true}
	dir := existingParent(h, stateDir)
	if free, err := h.FreeBytes(dir); err != nil {
		space.Detail = fmt.Sprintf("cannot read free space of %s: %v", dir, err)
	} else {
		space.Detail = fmt.Sprintf("%s free in %s", humanize.IBytes(free), dir)
		space.OK = free >= MinFreeBytes
		if !space.OK {
			space.Fix = fmt.Sprintf("free some space, or run the daemon with --state-dir on a larger file system (%s needed)", humanize.IBytes(MinFreeBytes))
		}
	}
	out = append(out, space)
	return out
}

func existingParent(h Host, dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := h.Stat(d); err == nil || !errors.Is(err, fs.ErrNotExist) || d == filepath.Dir(d) {
			return d
		}
	}
}

// Fixes shared by the /dev/kvm and accelerator checks.
const (
	fixNoKVM     = "enable virtualization (VT-x/AMD-V, or nested virtualization on a cloud VM), then `sudo modprobe kvm_intel` or `sudo modprobe kvm_amd`"
	fixKVMAccess = "run the daemon as root, or add its user to the kvm group: `sudo usermod -aG kvm $USER`"
)

// Accel is the accelerator check: what a probe (the daemon's, or one run
// here, as where says) concluded, and what to do about it.
func Accel(acc api.Accel, where string) Check {
	c := Check{Name: "accelerator", Required: false, Detail: acc.Summary}
	if acc.Name != "" {
		c.Detail += ", cpu " + acc.CPU
	}
	if acc.ProbeTook != "" {
		c.Detail += fmt.Sprintf(" (%s took %s)", where, acc.ProbeTook)
	}
	c.OK = acc.Name == "kvm"
	switch {
	case acc.Error != "":
		c.Required = true
		c.Detail += "; no VM can start: " + acc.Error
		c.Fix = "set accel = \"auto\" in " + config.DefaultPath + ", or run the daemon with --accel auto"
	case acc.KVM == api.KVMAbsent:
		c.Fix = fixNoKVM + "; VMs run under TCG meanwhile"
	case acc.KVM == api.KVMUnusable:
		c.Fix = fixKVMAccess
	case acc.KVM == api.KVMBroken:
		c.Fix = "KVM does not work on this host (often nested virtualization): VMs run under TCG, several times slower; a host with working KVM runs them at full speed"
	}
	return c
}

// Network is the guest network check: the line the daemon (or a driver
// configured here, as where says) gave for what guests reach.
func Network(line, where string) Check {
	c := Check{Name: "guest network", Required: false, Detail: line + " (" + where + ")"}
	c.OK = strings.HasPrefix(line, "passt:")
	if !c.OK {
		c.Fix = "install passt, and keep user_net = \"auto\" or \"passt\" in " + config.DefaultPath + ": guests then reach the outside network and never this host's loopback"
	}
	return c
}

// Bridge is the bridge network check: line is what the daemon (or a
// check run here, as where says) found, "unavailable: why" when bridge
// mode cannot run.
func Bridge(line, where string) Check {
	c := Check{Name: "bridge network", Required: false, Detail: line + " (" + where + ")"}
	c.OK = !strings.HasPrefix(line, "unavailable")
	if !c.OK {
		c.Detail = line + " (" + where + "): --net user and none still work"
		c.Fix = "run the daemon as root, on a kernel with nf_tables and tun, and give bridge_subnet in " + config.DefaultPath + " a range no route of this host's uses"
	} else {
		c.Detail = "--net bridge: " + c.Detail
	}
	return c
}

// Guard is the check of what keeps guests off this host: line is the
// daemon's word ("on: ...", "off ...", "FAILED: ..."), "" when no daemon
// answered.
func Guard(line string) Check {
	c := Check{Name: "host guard", Required: false}
	switch {
	case line == "":
		c.Detail = "no daemon answered: the daemon writes the guard (nftables table banger-guard) when it starts"
		c.OK = true
	case strings.HasPrefix(line, "on"):
		c.OK, c.Detail = true, line
	default:
		c.Detail = line
		c.Fix = "run the daemon as root on a kernel with nf_tables, with guard_host = true and vmm_user = \"auto\" in " + config.DefaultPath + ": guests then reach neither this host's addresses, link-local, nor its LAN"
	}
	return c
}

// Failed reports whether any required check failed.
func Failed(cs []Check) bool {
	for _, c := range cs {
		if c.Required && !c.OK {
			return true
		}
	}
	return false
}
