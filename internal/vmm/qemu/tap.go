package qemu

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// openTap attaches to the existing tap device name and returns its queue,
// for qemu to inherit. The flags match what hostnet made it with; the
// virtio header lets the guest hand checksums and segmentation to the
// host.
func openTap(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun for tap %s: %w", name, err)
	}
	var req struct {
		name  [unix.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	if len(name) >= unix.IFNAMSIZ {
		unix.Close(fd)
		return nil, fmt.Errorf("tap name %q is too long", name)
	}
	copy(req.name[:], name)
	req.flags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR
	// TUNSETIFF on a name that exists attaches; it must not create one:
	// the host network service made the tap, on its bridge.
	if _, err := os.Stat("/sys/class/net/" + name); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap %s does not exist: %w", name, err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req))); errno != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("attach to tap %s: %w", name, errno)
	}
	return os.NewFile(uintptr(fd), "tap-"+name), nil
}
