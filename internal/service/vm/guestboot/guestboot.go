// Package guestboot is how a guest comes up: the kernel command line and
// banger's initramfs it boots with, the ready line its agent prints on
// the console, and the identity a clone resumed from a saved guest is
// given before anyone else reaches it.
package guestboot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/banger-dev/banger/internal/format/initramfs"
	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/guest/guestssh"
	"github.com/banger-dev/banger/internal/kit/digest"
	"github.com/banger-dev/banger/internal/kit/keyedlock"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
	"golang.org/x/crypto/ssh"
)

// Initrds builds banger's initramfs per kernel and agent, once, into Dir.
type Initrds struct {
	Agent string // the guest agent binary; "" when none was found
	Dir   string
	Log   *slog.Logger

	locks              keyedlock.Locks
	mu                 sync.Mutex
	agentKey, agentSum string // guarded by mu: the agent's digest, by path, size and mtime
}

// For returns banger's initramfs for kernel k, building it on first
// use. It is cached per kernel content and agent build: a new agent or a
// re-pulled kernel gets a new one. A kernel without modules needs none.
func (b *Initrds) For(ctx context.Context, k api.Kernel, p operation.Progress) (string, error) {
	if !k.Modules || k.Release == "" {
		return "", nil
	}
	if b.Agent == "" {
		return "", fmt.Errorf("kernel %s needs banger's initramfs, which holds the guest agent, and no banger-agent binary was found: install it next to banger or set agent_path in the config", k.Name)
	}
	agentSum, err := b.AgentDigest()
	if err != nil {
		return "", fmt.Errorf("guest agent %s: %w", b.Agent, err)
	}
	key := fmt.Sprintf("%s-%s-%s%s", k.Name, digest.Short(k.Digest), digest.Short(agentSum), initramfs.Format)
	dir := b.Dir
	path := filepath.Join(dir, key+".img")
	built, err := b.locks.Once(ctx, path, func() error {
		p.Stage("initramfs", "building banger's initramfs for kernel %s (%s)", k.Name, k.Release)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		tmp, err := os.CreateTemp(dir, ".build-*")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		mods, err := initramfs.Build(tmp, b.Agent, filepath.Join(k.Dir, "modules", k.Release))
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("build initramfs for kernel %s: %w", k.Name, err)
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			return err
		}
		b.Log.Info("built initramfs", "kernel", k.Name, "modules", len(mods), "path", path)
		return nil
	})
	if err != nil {
		return "", err
	}
	if !built {
		return path, nil
	}
	// Older builds for this kernel are of no more use.
	old, _ := filepath.Glob(filepath.Join(dir, k.Name+"-*.img"))
	for _, o := range old {
		if o != path && strings.Count(strings.TrimPrefix(filepath.Base(o), k.Name+"-"), "-") == 1 { // not another kernel's whose name extends this one
			os.Remove(o)
		}
	}
	return path, nil
}

// AgentDigest is the agent binary's digest, hashed again only when the
// file changed: hashing 8 MiB on every start cost about 20 ms.
func (b *Initrds) AgentDigest() (string, error) {
	st, err := os.Stat(b.Agent)
	if err != nil {
		return "", err
	}
	key := fmt.Sprintf("%s|%d|%d", b.Agent, st.Size(), st.ModTime().UnixNano())
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.agentKey == key {
		return b.agentSum, nil
	}
	sum, err := digest.File(b.Agent)
	if err != nil {
		return "", err
	}
	b.agentKey, b.agentSum = key, sum
	return sum, nil
}

// ReadFrom returns a file's content from offset on.
func ReadFrom(path string, offset int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return "", err
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<20))
	return string(b), err
}

// ReadyIn says whether a boot's console shows the agent ready, and with
// which host key.
func ReadyIn(console string) (hostKey string, ok bool) {
	if !strings.Contains(console, guestproto.ReadyMarker) {
		return "", false
	}
	return guestproto.HostKeyFromConsole(console), true
}

// Tail returns the last n lines of s, for error messages.
func Tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 300 {
			lines[i] = l[:300] + "…"
		}
		lines[i] = "  | " + strings.TrimRight(l, "\r")
	}
	return strings.Join(lines, "\n")
}

// WaitReady waits for the agent's ready line on this boot's console. It
// gives up when the VMM exits (a kernel panic ends it: panic=-1 and
// -no-reboot), when timeout passes, or when ctx ends; the error carries
// the console's last lines. A guest asked to boot with init (InitParams)
// that came up with another is an error too.
func WaitReady(ctx context.Context, name, path string, offset int64, proc vmm.Process, timeout time.Duration, init string) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	// Every 10 ms, reading only what the guest printed since: the wait
	// adds little to a boot and costs the host next to nothing.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var con strings.Builder
	read := func() {
		more, err := ReadFrom(path, offset)
		if err == nil {
			con.WriteString(more)
			offset += int64(len(more))
		}
	}
	for {
		read()
		if key, ok := ReadyIn(con.String()); ok {
			if got := guestproto.InitFromReady(con.String()); init == guestproto.InitSystemd && got != init {
				return "", fmt.Errorf("vm %s: asked to boot with init %s, the guest came up with %s's: its console's last lines:\n%s", name, init, got, orNothing(Tail(con.String(), 25)))
			}
			return key, nil
		}
		if !proc.Alive() {
			// Read once more: the line may have landed as it exited.
			read()
			return "", fmt.Errorf("vm %s: the guest stopped before it was ready; its console's last lines:\n%s", name, orNothing(Tail(con.String(), 25)))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-deadline.C:
			return "", fmt.Errorf("vm %s: the guest was not ready after %s (raise it with --timeout, or ready_timeout in the config); its console's last lines:\n%s", name, timeout, orNothing(Tail(con.String(), 25)))
		case <-tick.C:
		}
	}
}

// tailOf is the last lines of a file, for an error message.
func tailOf(path string) string {
	if path == "" {
		return orNothing("")
	}
	b, err := ReadFrom(path, 0)
	if err != nil {
		return "  (" + err.Error() + ")"
	}
	return orNothing(Tail(b, 15))
}

func orNothing(s string) string {
	if strings.TrimSpace(strings.ReplaceAll(s, "|", "")) == "" {
		return "  (the console is empty)"
	}
	return s
}

// Cmdline builds the guest kernel's command line. Kernel parameters are
// limited to 2048 bytes on x86; keys are bounded so that it fits.
func Cmdline(name string, initrd bool, keys []string, driverParams []string) string {
	w := []string{
		"console=ttyS0", "reboot=k", "panic=-1", "quiet",
		// Skip the crypto API's boot-time self-tests and probing serial
		// ports nobody uses: 0.4 s of a 2.8 s boot under TCG (measured
		// with bench/boottime, 6 boots each), as Kata Containers does.
		"cryptomgr.notests", "8250.nr_uarts=1",
		"root=/dev/vda", "rw", "rootfstype=ext4",
		guestproto.ParamName + "=" + name,
	}
	if !initrd {
		// No initramfs to hand over to the agent: the kernel runs it.
		w = append(w, "init=/.banger/init")
	}
	if len(keys) > 0 {
		w = append(w, guestproto.ParamKeys+"="+guestproto.EncodeKeys(keys))
	}
	return strings.Join(append(w, driverParams...), " ")
}

// InitParams are the kernel parameters that boot a guest with init
// (guestproto.InitSystemd or banger's own, ""). Under systemd the
// network interface keeps the kernel's name (eth0), which the agent
// configures before udev would rename it; and no getty is started on
// the serial console, which is banger's log of the boot, not a
// terminal, and whose device an image without udev never announces
// (systemd waited 90 s for it, then went on).
func InitParams(init string) []string {
	if init != guestproto.InitSystemd {
		return nil
	}
	return []string{guestproto.ParamInit + "=" + init, "net.ifnames=0", "systemd.getty_auto=0"}
}

// Clone is a guest resumed from a saved state, to be given its identity.
type Clone struct {
	Addr     string     // its agent's SSH address
	SavedKey string     // the saved guest's host key, which it still serves
	Daemon   ssh.Signer // the daemon's key, which the saved guest accepts
	Alive    func() bool
	// Console and Log are the guest's console and the VMM's own log,
	// whose last lines a failure quotes.
	Console, Log string
	Hostname     string
	Keys         []string // authorized keys, the daemon's first
	// MountWork has the agent mount its work disk then.
	MountWork bool
}

// GiveIdentity reaches a resumed guest's agent, which still serves the
// saved guest's host key, and has it become c: hostname, authorized keys,
// a host key of its own (whose fingerprint it answers, and which is
// pinned from then on), machine ID, fresh entropy, the host's clock,
// and its work disk.
func GiveIdentity(ctx context.Context, c Clone, timeout time.Duration) (string, error) {
	keys, templateKey := c.Keys, c.SavedKey
	entropy := make([]byte, 64)
	mid := make([]byte, 16)
	if _, err := rand.Read(entropy); err != nil {
		return "", err
	}
	if _, err := rand.Read(mid); err != nil {
		return "", err
	}
	id := guestproto.Identity{Hostname: c.Hostname, Keys: keys, Entropy: entropy, MachineID: hex.EncodeToString(mid)}
	if c.MountWork {
		id.Work = "/dev/vdb"
	}
	deadline := time.Now().Add(timeout)
	var cl *ssh.Client
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		cl, err = guestssh.Connect(cctx, c.Addr, templateKey, c.Daemon)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return "", err
		}
		if !c.Alive() {
			return "", fmt.Errorf("the VMM exited as the guest resumed (%v); its log's last lines:\n%s\nthe console's:\n%s", err, tailOf(c.Log), tailOf(c.Console))
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("the guest's agent did not answer within %s (%v); the console's last lines:\n%s", timeout, err, tailOf(c.Console))
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer cl.Close()
	// The clock last: as close to the guest setting it as can be.
	id.UnixNano = time.Now().UnixNano()
	b, _ := json.Marshal(id)
	ok, reply, err := cl.SendRequest(guestproto.IdentityRequest, true, ssh.Marshal(struct{ JSON string }{string(b)}))
	if err != nil {
		return "", err
	}
	if !ok {
		var m struct{ Message string }
		if ssh.Unmarshal(reply, &m) != nil || m.Message == "" {
			m.Message = "refused (an agent older than the template?)"
		}
		return "", fmt.Errorf("the guest agent says: %s", m.Message)
	}
	var r struct{ Fingerprint string }
	if err := ssh.Unmarshal(reply, &r); err != nil || !strings.HasPrefix(r.Fingerprint, "SHA256:") || r.Fingerprint == templateKey {
		return "", fmt.Errorf("the guest agent answered no new host key")
	}
	return r.Fingerprint, nil
}

// Dial reaches a running VM's agent with the daemon's own key, pinned to
// the host key the agent printed.
func Dial(ctx context.Context, v store.VM, key ssh.Signer) (*ssh.Client, error) {
	if key == nil {
		return nil, fmt.Errorf("the daemon has no key to reach the guest agent")
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := guestssh.Connect(cctx, v.SSHAddr(), v.HostKey, key)
	if err != nil {
		return nil, fmt.Errorf("reach the guest agent of vm %s: %w", v.Name, err)
	}
	return c, nil
}

// Lend sends a guest's agent what msg lends it (files on its tmpfs,
// variables for later sessions, a CA to trust), and says what the agent
// answered when it refused.
func Lend(c *ssh.Client, msg guestproto.AuthSync) error {
	b, _ := json.Marshal(msg)
	ok, reply, err := c.SendRequest(guestproto.AuthSyncRequest, true, ssh.Marshal(struct{ JSON string }{string(b)}))
	if err != nil {
		return err
	}
	if !ok {
		var m struct{ Message string }
		if ssh.Unmarshal(reply, &m) != nil || m.Message == "" {
			m.Message = "refused (an older agent? restart the VM)"
		}
		return fmt.Errorf("the guest agent says: %s: %w", m.Message, errdefs.ErrConflict)
	}
	return nil
}
