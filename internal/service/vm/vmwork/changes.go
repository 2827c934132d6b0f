package vmwork

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/banger-dev/banger/internal/format/ext4"
	"github.com/banger-dev/banger/internal/format/ext4read"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/service/vm/vmdisk"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// unchangedOwn are what banger itself writes on every VM's root disk
// (the agent, its links and host key, the resolver it writes), besides
// the identity promotion leaves out: not the guest's changes.
var unchangedOwn = []string{".banger", ".banger/*", "etc/resolv.conf", "usr/local/sbin/modprobe", "usr/local/sbin/lsmod", "work"}

// RootChanges says how a stopped VM's root disk differs from its image:
// both are read in the sandbox, as tar streams checked on the way (the
// VM's is the guest's writing), and compared entry by entry (type, mode,
// owner, link target, size and content digest; not times). The VM is
// locked meanwhile, so it cannot start.
func (s *Service) RootChanges(ctx context.Context, name string) (api.RootChanges, error) {
	v, unlock, err := s.d.VMs.LockedRecord(ctx, name, operation.Discard)
	if err != nil {
		return api.RootChanges{}, err
	}
	defer unlock()
	if v.State != api.VMStopped {
		return api.RootChanges{}, fmt.Errorf("vm %s is %s: its root disk is read when it is stopped (`banger vm stop %s`): %w", v.Name, v.State, v.Name, errdefs.ErrConflict)
	}
	im, err := s.d.Images.Get(ctx, v.Image)
	if err != nil {
		return api.RootChanges{}, fmt.Errorf("vm %s's image: %w", v.Name, err)
	}
	disk, err := vmdisk.Root(s.d.Layout.VM(v.Name))
	if err != nil {
		return api.RootChanges{}, fmt.Errorf("vm %s: %w", v.Name, err)
	}
	tmp, err := os.MkdirTemp(s.d.Layout.Staging(), "changes-")
	if err != nil {
		return api.RootChanges{}, err
	}
	defer os.RemoveAll(tmp)
	raw := filepath.Join(tmp, "root.raw")
	if err := s.d.Driver.Flatten(ctx, disk, raw); err != nil {
		return api.RootChanges{}, fmt.Errorf("vm %s's root disk: %w", v.Name, err)
	}
	was, err := s.listDisk(ctx, im.Disk)
	if err != nil {
		return api.RootChanges{}, fmt.Errorf("read image %s: %w", im.Name, err)
	}
	now, err := s.listDisk(ctx, raw)
	if err != nil {
		return api.RootChanges{}, fmt.Errorf("read vm %s's root disk: %w", v.Name, err)
	}
	out := compareTrees(was, now)
	out.VM, out.Image = v.Name, im.Name
	return out, nil
}

// node is what a path is, for comparing.
type node struct {
	typ  string
	size int64
	sum  string // mode, owner, link target and content digest
}

// listDisk reads the tree of an ext4 disk in the sandbox.
func (s *Service) listDisk(ctx context.Context, disk string) (map[string]node, error) {
	fi, err := os.Stat(disk)
	if err != nil {
		return nil, err
	}
	o := ext4read.Options{
		Limits: ext4read.Limits{Entries: s.d.MaxPromoteEntries, Bytes: min(fi.Size(), ext4.MaxDiskSize)},
		Root:   true,
		Skip:   append(append([]string{}, identity...), unchangedOwn...),
	}
	pr, pw := io.Pipe()
	read := make(chan error, 1)
	go func() {
		_, err := s.d.GuestDisks.Tar(ctx, disk, o, pw)
		pw.CloseWithError(err)
		read <- err
	}()
	nodes := map[string]node{}
	tr := tar.NewReader(pr)
	var rerr error
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			rerr = err
			break
		}
		p := strings.TrimSuffix(path.Clean(strings.TrimPrefix(h.Name, "./")), "/")
		n := node{typ: "other", size: h.Size}
		sum := sha256.New()
		fmt.Fprintf(sum, "%o %d %d %s\x00", h.Mode, h.Uid, h.Gid, h.Linkname)
		switch h.Typeflag {
		case tar.TypeReg:
			n.typ = "file"
			if _, err := io.Copy(sum, tr); err != nil {
				rerr = err
			}
		case tar.TypeDir:
			n.typ, n.size = "dir", 0
		case tar.TypeSymlink:
			n.typ = "symlink"
		case tar.TypeLink:
			n.typ = "file"
		}
		if rerr != nil {
			break
		}
		n.sum = string(sum.Sum(nil))
		nodes[p] = n
	}
	pr.CloseWithError(errors.New("listing stopped"))
	if err := <-read; err != nil {
		return nil, err
	}
	return nodes, rerr
}

// compareTrees lists what differs between the image's tree and the
// VM's, each list sorted and bounded.
func compareTrees(was, now map[string]node) api.RootChanges {
	out := api.RootChanges{Added: []api.FileChange{}, Changed: []api.FileChange{}, Removed: []api.FileChange{}}
	add := func(list *[]api.FileChange, c api.FileChange) {
		if len(*list) >= api.MaxRootChanges {
			out.Truncated = true
			return
		}
		*list = append(*list, c)
	}
	for _, p := range sortedKeys(now) {
		n := now[p]
		o, ok := was[p]
		switch {
		case !ok:
			add(&out.Added, api.FileChange{Path: p, Type: n.typ, Size: n.size})
		case o.sum != n.sum || o.typ != n.typ:
			// A directory's sum is its mode and owner: what is below it
			// is listed by itself.
			add(&out.Changed, api.FileChange{Path: p, Type: n.typ, Size: n.size, Was: o.size})
		}
	}
	for _, p := range sortedKeys(was) {
		if _, ok := now[p]; !ok {
			add(&out.Removed, api.FileChange{Path: p, Type: was[p].typ, Was: was[p].size})
		}
	}
	return out
}

func sortedKeys(m map[string]node) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
