package guestboot

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/banger-dev/banger/internal/guest/guestproto"
	"github.com/banger-dev/banger/internal/kit/digest"
	"github.com/banger-dev/banger/internal/kit/keyedlock"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/kit/runner"
	"github.com/banger-dev/banger/internal/wire/api"
)

// ModulesDisks builds, once per kernel, the read-only disk that brings a
// kernel's modules to its guests: the modules tree with depmod's indexes
// (so the image's own modprobe works as well as the agent's), as an ext4
// file system labelled guestproto.ModulesLabel, which the agent mounts at
// /lib/modules/<release>. Images stay untouched and need no kmod.
type ModulesDisks struct {
	Dir    string
	Runner runner.Runner
	// UID runs depmod, which parses every module file: a kernel a user
	// imported is that user's data, so never as root.
	UID int
	Log *slog.Logger

	locks keyedlock.Locks
}

// Sweep removes what a daemon killed mid-build left in Dir (a staged
// copy of a kernel's modules is hundreds of MiB). Run at start, before
// any build.
func (m *ModulesDisks) Sweep() []string {
	left, _ := filepath.Glob(filepath.Join(m.Dir, ".build-*"))
	tmps, _ := filepath.Glob(filepath.Join(m.Dir, "*.modules.ext4.tmp"))
	left = append(left, tmps...)
	for _, p := range left {
		os.RemoveAll(p)
	}
	return left
}

// ModulesFile is a kernel's modules disk's name in Dir.
func ModulesFile(k api.Kernel) string {
	return fmt.Sprintf("%s-%s.modules.ext4", k.Name, digest.Short(k.Digest))
}

// For returns kernel k's modules disk, building it on first use; "" for
// a kernel without modules. Without depmod on the host there is none
// either: the guest boots without its modules, and says so.
func (m *ModulesDisks) For(ctx context.Context, k api.Kernel, p operation.Progress) (string, error) {
	if !k.Modules || k.Release == "" || m == nil || m.Dir == "" {
		return "", nil
	}
	depmod, err := m.Runner.LookPath("depmod")
	if err != nil {
		if depmod, err = m.Runner.LookPath("/usr/sbin/depmod"); err != nil {
			p.Stage("modules", "kernel %s's modules stay out of the guest: depmod is not installed here (apt-get install kmod)", k.Name)
			return "", nil
		}
	}
	path := filepath.Join(m.Dir, ModulesFile(k))
	built, err := m.locks.Once(ctx, path, func() error {
		p.Stage("modules", "building kernel %s's modules disk (%s), once", k.Name, k.Release)
		return m.build(ctx, depmod, filepath.Join(k.Dir, "modules", k.Release), k.Release, path)
	})
	if err != nil {
		return "", fmt.Errorf("modules disk of kernel %s: %w", k.Name, err)
	}
	if built {
		old, _ := filepath.Glob(filepath.Join(m.Dir, k.Name+"-*.modules.ext4"))
		for _, o := range old {
			if o != path && strings.Count(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(o), k.Name+"-"), ".modules.ext4"), "-") == 0 {
				os.Remove(o)
			}
		}
		m.Log.Info("built modules disk", "kernel", k.Name, "release", k.Release, "path", path)
	}
	return path, nil
}

func (m *ModulesDisks) build(ctx context.Context, depmod, src, release, path string) error {
	if err := os.MkdirAll(m.Dir, 0o755); err != nil {
		return err
	}
	stage, err := os.MkdirTemp(m.Dir, ".build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	// depmod -b wants BASE/lib/modules/RELEASE; only the tree's
	// directories are the depmod user's to write in.
	tree := filepath.Join(stage, "lib", "modules", release)
	size, err := linkTree(src, tree)
	if err != nil {
		return fmt.Errorf("stage the modules: %w", err)
	}
	for _, d := range []string{stage, filepath.Join(stage, "lib"), filepath.Join(stage, "lib", "modules")} {
		os.Chmod(d, 0o755)
	}
	uid := strconv.Itoa(m.UID)
	if err := chownDirs(tree, m.UID); err != nil {
		return err
	}
	// Run in the stage, named through /proc/self/cwd: the state
	// directory above it is root's alone, and a magic link is not a
	// path whose directories are searched.
	if _, err := m.Runner.Run(ctx, runner.Cmd{Dir: stage, Name: "setpriv", Args: []string{"--reuid=" + uid, "--regid=" + uid, "--clear-groups", "--no-new-privs", "--", depmod, "-b", "/proc/self/cwd", "-a", release}}); err != nil {
		return fmt.Errorf("depmod: %w", err)
	}
	if err := chownDirs(tree, 0); err != nil {
		return err
	}
	// Room for the indexes and ext4's own: a fifth more, and 16 MiB.
	bytes := size + size/5 + 16<<20
	tmp := path + ".tmp"
	os.Remove(tmp)
	if _, err := m.Runner.Run(ctx, runner.Cmd{Name: "mkfs.ext4", Args: []string{
		"-q", "-F", "-L", guestproto.ModulesLabel, "-O", "^has_journal", "-E", "root_owner=0:0", "-d", tree, tmp, strconv.FormatInt(bytes/1024, 10) + "k",
	}, GuestTree: true}); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mkfs.ext4: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// linkTree copies src to dst, readable by all, and returns the bytes it
// holds. Only directories and
// regular files are taken: a kernel's modules tree has nothing else that
// matters to a guest.
func linkTree(src, dst string) (int64, error) {
	var total int64
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			if err := os.MkdirAll(to, 0o755); err != nil {
				return err
			}
			return os.Chmod(to, 0o755)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += fi.Size() + 4096
			// Copied, not linked: the kernel's files are root's alone,
			// and depmod runs as another user.
			return copyFile(p, to)
		}
		return nil
	})
	return total, err
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	// The daemon's umask (077) is not the guest tree's.
	if err := out.Chmod(0o644); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// chownDirs gives the directories under root to uid.
func chownDirs(root string, uid int) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return os.Chown(p, uid, uid)
	})
}
