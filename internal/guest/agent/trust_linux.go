package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/guest/guestproto"
)

// systemBundle is where Debian, Ubuntu, Alpine and Arch keep the CA
// bundle that curl, git, Go and OpenSSL read by default.
const systemBundle = "/etc/ssl/certs/ca-certificates.crt"

// installTrust has the guest trust ca (the secrets proxy's): the image's
// bundle with ca added is written to TrustBundle and bound over the
// image's bundle, so tools that read the usual file trust it without a
// variable, and nothing is written to the root disk.
func installTrust(ca []byte) error {
	if err := os.MkdirAll(guestproto.TrustDir, 0o755); err != nil {
		return fmt.Errorf("trust the proxy's CA: %w", err)
	}
	if err := os.WriteFile(guestproto.TrustCA, ca, 0o644); err != nil {
		return fmt.Errorf("trust the proxy's CA: %w", err)
	}
	// The image's own bundle, read once: later the path shows ours.
	saved := filepath.Join(guestproto.TrustDir, "image-bundle.pem")
	base, err := os.ReadFile(saved)
	if errors.Is(err, fs.ErrNotExist) {
		base, err = os.ReadFile(systemBundle)
		if errors.Is(err, fs.ErrNotExist) {
			base, err = nil, nil
		}
		if err == nil {
			err = os.WriteFile(saved, base, 0o644)
		}
	}
	if err != nil {
		return fmt.Errorf("read the image's CA bundle: %w", err)
	}
	bundle := append(bytes.TrimRight(base, "\n"), '\n')
	if len(base) == 0 {
		bundle = nil
	}
	bundle = append(bundle, ca...)
	// Rewritten in place, not renamed: a rename would leave the bind
	// mount on the old file.
	if err := os.WriteFile(guestproto.TrustBundle, bundle, 0o644); err != nil {
		return fmt.Errorf("write the CA bundle: %w", err)
	}
	if _, err := os.Stat(systemBundle); err != nil {
		return nil
	}
	if bound(systemBundle) {
		return nil
	}
	if err := unix.Mount(guestproto.TrustBundle, systemBundle, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("put the CA bundle over %s: %w", systemBundle, err)
	}
	return nil
}

// bound says whether path already shows TrustBundle.
func bound(path string) bool {
	var a, b unix.Stat_t
	return unix.Stat(path, &a) == nil && unix.Stat(guestproto.TrustBundle, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino
}
