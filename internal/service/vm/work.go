package vm

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/guest/guestssh"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/service/workspace"
	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

func workDisk(dir string) string { return filepath.Join(dir, workspace.DiskName) }

// withWork takes the VM's lock and returns its record, refusing a VM
// without a work disk.
func (s *Service) withWork(ctx context.Context, name string) (store.VM, func(), error) {
	v, unlock, err := s.lockedGet(ctx, name, operation.Discard)
	if err != nil {
		return v, nil, err
	}
	if v.Work == nil {
		unlock()
		return v, nil, noWork(name)
	}
	return v, unlock, nil
}

func noWork(name string) error {
	return fmt.Errorf("vm %s has no work disk: it was created outside a directory to seed, or with --no-workdir: %w", name, errdefs.ErrNotFound)
}

// ExportWork writes the VM's /work to w as a tar stream: from the guest
// agent while the VM runs, from the disk (without booting it, without
// changing it) when it is stopped. The VM's lock is held throughout, so
// that it does not start or stop half-way.
func (s *Service) ExportWork(ctx context.Context, name string, w io.Writer) error {
	v, unlock, err := s.withWork(ctx, name)
	if err != nil {
		return err
	}
	defer unlock()
	switch v.State {
	case api.VMStopped:
		return s.d.Work.ExportDisk(ctx, workDisk(s.d.Layout.VM(name)), w)
	case api.VMRunning:
		c, err := s.dialGuest(ctx, v)
		if err != nil {
			return err
		}
		defer c.Close()
		return s.d.Work.ExportGuest(ctx, c, v.Work.DiskBytes, w)
	default:
		return fmt.Errorf("vm %s is %s: try again once it is running or stopped: %w", name, v.State, errdefs.ErrConflict)
	}
}

// CheckWork answers quickly whether ExportWork can start.
func (s *Service) CheckWork(ctx context.Context, name string) error {
	v, err := s.get(ctx, name)
	if err != nil {
		return err
	}
	if v.Work == nil {
		return noWork(name)
	}
	return nil
}

// WorkPulled records that the VM's work was brought back as a branch, so
// that removing the VM no longer asks for --force.
func (s *Service) WorkPulled(ctx context.Context, name string, req api.WorkPulled) (api.VM, error) {
	if len(req.Branch) > 1024 || len(req.Commit) > 64 || strings.ContainsAny(req.Branch+req.Commit, "\x00\n") {
		return api.VM{}, fmt.Errorf("bad branch or commit: %w", errdefs.ErrInvalid)
	}
	v, unlock, err := s.withWork(ctx, name)
	if err != nil {
		return api.VM{}, err
	}
	defer unlock()
	v.Work.PulledAt, v.Work.PulledBranch, v.Work.PulledCommit = time.Now().UTC(), req.Branch, req.Commit
	if err := s.d.Store.UpdateVM(ctx, v); err != nil {
		return api.VM{}, err
	}
	s.d.Log.Info("work pulled", "vm", name, "branch", req.Branch, "commit", req.Commit)
	return s.view(v), nil
}

// Bounds of one auth sync: credentials are small.
const (
	maxLentFiles = 64
	maxLentBytes = 1 << 20
)

// CheckAuthSync validates what is to be lent.
func CheckAuthSync(req api.AuthSync) error {
	if len(req.Files) > maxLentFiles {
		return fmt.Errorf("%d files to lend: at most %d: %w", len(req.Files), maxLentFiles, errdefs.ErrInvalid)
	}
	total := 0
	for _, f := range req.Files {
		if _, err := guestproto.HomePath(f.Path); err != nil {
			return fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
		}
		total += len(f.Data)
	}
	for k, v := range req.Env {
		if !guestproto.EnvName(k) || strings.ContainsRune(v, 0) {
			return fmt.Errorf("lent variable %q: not a variable name: %w", k, errdefs.ErrInvalid)
		}
		total += len(k) + len(v)
	}
	if total > maxLentBytes {
		return fmt.Errorf("%d bytes to lend: at most %d: %w", total, maxLentBytes, errdefs.ErrInvalid)
	}
	return nil
}

// AuthSync lends a running guest the files and variables in req, through
// its agent: the files land on a tmpfs, so they never reach a disk. Only
// their names are kept, to show, and only for this boot of the VM.
func (s *Service) AuthSync(ctx context.Context, name string, req api.AuthSync) (api.VM, error) {
	if err := CheckAuthSync(req); err != nil {
		return api.VM{}, err
	}
	v, unlock, err := s.lockedGet(ctx, name, operation.Discard)
	if err != nil {
		return api.VM{}, err
	}
	defer unlock()
	if v.State != api.VMRunning {
		return api.VM{}, fmt.Errorf("vm %s is %s: credentials are lent to a running VM: %w", name, v.State, errdefs.ErrConflict)
	}
	msg := guestproto.AuthSync{User: "root", Files: map[string][]byte{}, Env: req.Env}
	var names []string
	for _, f := range req.Files {
		msg.Files[path.Clean(f.Path)] = f.Data
		names = append(names, "~/"+path.Clean(f.Path))
	}
	for k := range req.Env {
		names = append(names, "$"+k)
	}
	sort.Strings(names)
	c, err := s.dialGuest(ctx, v)
	if err != nil {
		return api.VM{}, err
	}
	defer c.Close()
	b, _ := json.Marshal(msg)
	ok, reply, err := c.SendRequest(guestproto.AuthSyncRequest, true, ssh.Marshal(struct{ JSON string }{string(b)}))
	if err != nil {
		return api.VM{}, fmt.Errorf("lend credentials to vm %s: %w", name, err)
	}
	if !ok {
		var m struct{ Message string }
		if ssh.Unmarshal(reply, &m) != nil || m.Message == "" {
			m.Message = "refused (an older agent? restart the VM)"
		}
		return api.VM{}, fmt.Errorf("lend credentials to vm %s: the guest agent says: %s: %w", name, m.Message, errdefs.ErrConflict)
	}
	if err := s.recordLent(v, names); err != nil {
		return api.VM{}, err
	}
	s.d.Log.Info("lent credentials", "vm", name, "names", names)
	return s.view(v), nil
}

// lentFile records, in a VM's directory, the names of what its current
// boot was lent: on disk, so that a daemon restarted while the VM runs
// still refuses to snapshot it without --with-lent.
const lentFile = "lent.json"

// lentRecord is what lentFile holds: names, never values, and the boot
// (VMM process) they were lent to.
type lentRecord struct {
	PID      int      `json:"pid"`
	PIDStart uint64   `json:"pid_start"`
	Names    []string `json:"names"`
}

// lentTo names what v's current boot holds of lent credentials.
func (s *Service) lentTo(v store.VM) []string {
	b, err := os.ReadFile(filepath.Join(s.d.Layout.VM(v.Name), lentFile))
	if err != nil {
		return nil
	}
	var r lentRecord
	if json.Unmarshal(b, &r) != nil || r.PID != v.PID || r.PIDStart != v.PIDStart || v.PID == 0 {
		return nil
	}
	return r.Names
}

// recordLent adds names to what v's current boot holds.
func (s *Service) recordLent(v store.VM, names []string) error {
	if len(names) == 0 {
		return nil
	}
	s.lentMu.Lock()
	defer s.lentMu.Unlock()
	names = mergeNames(s.lentTo(v), names)
	b, _ := json.Marshal(lentRecord{PID: v.PID, PIDStart: v.PIDStart, Names: names})
	if err := writeFileSync(filepath.Join(s.d.Layout.VM(v.Name), lentFile), b); err != nil {
		return fmt.Errorf("record what vm %s was lent: %w", v.Name, err)
	}
	return nil
}

func mergeNames(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range append(a, b...) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// dialGuest reaches a running VM's agent with the daemon's own key.
func (s *Service) dialGuest(ctx context.Context, v store.VM) (*ssh.Client, error) {
	if s.d.Key == nil {
		return nil, fmt.Errorf("the daemon has no key to reach the guest agent")
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := guestssh.Connect(cctx, v.SSHAddr(), v.HostKey, s.d.Key)
	if err != nil {
		return nil, fmt.Errorf("reach the guest agent of vm %s: %w", v.Name, err)
	}
	return c, nil
}

// writeFileSync replaces path with data whole: a crash leaves the old
// file or the new one, never half of one.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
