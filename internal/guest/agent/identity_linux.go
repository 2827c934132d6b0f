package agent

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"
	"unsafe"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest/guestproto"
)

var machineID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// applyIdentity makes a guest restored from a template its own machine.
// The kernel's random generator is reseeded first, so that the host key
// made next differs from every other clone's.
func applyIdentity(id guestproto.Identity, hostKeyPath string) (ssh.Signer, []ssh.PublicKey, error) {
	if len(id.Entropy) < guestproto.MinEntropy {
		return nil, nil, fmt.Errorf("identity: %d bytes of entropy, want at least %d", len(id.Entropy), guestproto.MinEntropy)
	}
	if id.Hostname == "" || len(id.Hostname) > 64 {
		return nil, nil, fmt.Errorf("identity: bad hostname %q", id.Hostname)
	}
	if id.MachineID != "" && !machineID.MatchString(id.MachineID) {
		return nil, nil, fmt.Errorf("identity: bad machine id %q", id.MachineID)
	}
	if err := reseed(id.Entropy); err != nil {
		return nil, nil, fmt.Errorf("identity: reseed the random generator: %w", err)
	}
	if id.UnixNano > 0 {
		ts := unix.NsecToTimespec(id.UnixNano)
		if err := unix.ClockSettime(unix.CLOCK_REALTIME, &ts); err != nil {
			return nil, nil, fmt.Errorf("identity: set the clock: %w", err)
		}
	}
	if err := unix.Sethostname([]byte(id.Hostname)); err != nil {
		return nil, nil, fmt.Errorf("identity: set the hostname: %w", err)
	}
	if id.MachineID != "" {
		for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
			if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() {
				if err := os.WriteFile(p, []byte(id.MachineID+"\n"), 0o444); err != nil {
					return nil, nil, fmt.Errorf("identity: %s: %w", p, err)
				}
			}
		}
	}
	// The template's key is on the template's disk, under every clone's
	// overlay: this clone writes its own over it.
	if err := os.Remove(hostKeyPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("identity: %w", err)
	}
	os.Remove(hostKeyPath + ".pub")
	host, err := hostKey(hostKeyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: host key: %w", err)
	}
	if id.Work != "" {
		if err := mountWork(id.Work); err != nil {
			return nil, nil, fmt.Errorf("identity: %w", err)
		}
	}
	keys, _ := os.ReadFile("/root/.ssh/authorized_keys")
	for _, k := range id.Keys {
		keys = append(append(keys, '\n'), k...)
	}
	fmt.Printf("%s%s\n", guestproto.HostKeyPrefix, ssh.FingerprintSHA256(host.PublicKey()))
	fmt.Printf("%s: restored from a template as %s at %s\n", guestproto.ReadyMarker, id.Hostname, time.Unix(0, id.UnixNano).UTC().Format(time.RFC3339))
	return host, ParseAuthorizedKeys(keys), nil
}

// reseed credits the host's bytes to the kernel's pool and makes the
// generator rekey from it at once (RNDRESEEDCRNG), rather than at its
// next scheduled reseed, up to a minute later.
func reseed(entropy []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	info := make([]byte, 8+len(entropy))
	*(*int32)(unsafe.Pointer(&info[0])) = int32(len(entropy) * 8)
	*(*int32)(unsafe.Pointer(&info[4])) = int32(len(entropy))
	copy(info[8:], entropy)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&info[0]))); e != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", e)
	}
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); e != 0 {
		return fmt.Errorf("RNDRESEEDCRNG: %w", e)
	}
	return nil
}

// mountWork mounts the work disk at WorkDir. The device was in the
// template as an empty placeholder, whose first blocks the kernel read
// while probing it: those are dropped (BLKFLSBUF) before the file
// system is read.
func mountWork(dev string) error {
	if err := waitFor(dev, 5*time.Second); err != nil {
		return err
	}
	f, err := os.Open(dev)
	if err != nil {
		return fmt.Errorf("work disk: %w", err)
	}
	err = unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
	f.Close()
	if err != nil {
		return fmt.Errorf("work disk: flush %s: %w", dev, err)
	}
	os.MkdirAll(guestproto.WorkDir, 0o755)
	if err := unix.Mount(dev, guestproto.WorkDir, "ext4", unix.MS_NOATIME, ""); err != nil {
		return fmt.Errorf("mount work disk %s: %w", dev, err)
	}
	return nil
}
