package kernel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/bzimage"
	"github.com/banger-dev/banger/internal/errdefs"
	"github.com/banger-dev/banger/internal/layout"
	"github.com/banger-dev/banger/internal/operation"
)

func checkImportRequest(req api.KernelImportRequest) error {
	if (req.Deb == "") == (req.Kernel == "") {
		return fmt.Errorf("import kernel %s: give either a .deb or a kernel file: %w", req.Name, errdefs.ErrInvalid)
	}
	if req.Deb != "" && (req.Initrd != "" || req.Modules != "") {
		return fmt.Errorf("import kernel %s: --initrd and --modules go with --kernel, not --deb: %w", req.Name, errdefs.ErrInvalid)
	}
	for _, p := range []struct{ flag, path string }{{"deb", req.Deb}, {"kernel", req.Kernel}, {"initrd", req.Initrd}, {"modules", req.Modules}} {
		if p.path == "" {
			continue
		}
		if !filepath.IsAbs(p.path) {
			return fmt.Errorf("import kernel %s: %s path %q must be absolute: %w", req.Name, p.flag, p.path, errdefs.ErrInvalid)
		}
		fi, err := os.Stat(p.path)
		if err != nil {
			return fmt.Errorf("import kernel %s: %s %s: %w: %w", req.Name, p.flag, p.path, err, errdefs.ErrInvalid)
		}
		if p.flag == "modules" && !fi.IsDir() {
			return fmt.Errorf("import kernel %s: modules %s is not a directory: %w", req.Name, p.path, errdefs.ErrInvalid)
		}
		if p.flag != "modules" && !fi.Mode().IsRegular() {
			return fmt.Errorf("import kernel %s: %s %s is not a regular file: %w", req.Name, p.flag, p.path, errdefs.ErrInvalid)
		}
	}
	return nil
}

func (s *Service) importFiles(ctx context.Context, req api.KernelImportRequest, dir string, p operation.Progress) (staged, error) {
	if req.Deb != "" {
		digest, err := fileSHA256(req.Deb)
		if err != nil {
			return staged{}, err
		}
		st, err := s.unpackDebFile(ctx, req.Deb, dir, p)
		var meta *metaPackageError
		if errors.As(err, &meta) {
			return staged{}, fmt.Errorf("%s: import the kernel package itself (%s): %w", meta.Error(), meta.dependsOn, errdefs.ErrInvalid)
		}
		if err != nil {
			return staged{}, err
		}
		st.sourceKind, st.source, st.digest = "import", req.Deb, digest
		if req.Version != "" {
			st.version = req.Version
		}
		return st, nil
	}
	digest, err := fileSHA256(req.Kernel)
	if err != nil {
		return staged{}, err
	}
	p.Stage("copy", "copying %s", req.Kernel)
	tmp := filepath.Join(dir, "import-kernel")
	if err := copyFile(req.Kernel, tmp); err != nil {
		return staged{}, err
	}
	if err := s.placeKernel(tmp, dir, p); err != nil {
		return staged{}, fmt.Errorf("%s: %w", req.Kernel, err)
	}
	if req.Initrd != "" {
		p.Stage("copy", "copying %s", req.Initrd)
		if err := copyFile(req.Initrd, filepath.Join(dir, layout.KernelInitrd)); err != nil {
			return staged{}, err
		}
	}
	if req.Modules != "" {
		src, release, err := modulesRelease(req.Modules)
		if err != nil {
			return staged{}, err
		}
		p.Stage("copy", "copying modules %s", src)
		if err := copyTree(ctx, src, filepath.Join(dir, layout.KernelModules, release), s.d.MaxUnpacked); err != nil {
			return staged{}, fmt.Errorf("copy modules %s: %w", src, err)
		}
	}
	return staged{version: req.Version, sourceKind: "import", source: req.Kernel, digest: digest}, nil
}

// modulesRelease accepts either /lib/modules/<release> or a directory
// holding exactly one <release>, and returns the release directory.
func modulesRelease(dir string) (string, string, error) {
	if isReleaseDir(dir) {
		return dir, filepath.Base(dir), nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", "", err
	}
	var found []string
	for _, e := range entries {
		if e.IsDir() && isReleaseDir(filepath.Join(dir, e.Name())) {
			found = append(found, e.Name())
		}
	}
	if len(found) != 1 {
		return "", "", fmt.Errorf("modules %s: want a /lib/modules/<release> directory (with modules.dep or kernel/), found %d releases in it: %w", dir, len(found), errdefs.ErrInvalid)
	}
	return filepath.Join(dir, found[0]), found[0], nil
}

func isReleaseDir(dir string) bool {
	for _, n := range []string{"modules.dep", "kernel", "modules.order"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return false
}

// inspect checks what a source left in dir and lists it: a vmlinux that is
// an ELF file must be there; modules, when present, are one release.
func inspect(dir string) (api.Kernel, error) {
	var k api.Kernel
	vmlinux := filepath.Join(dir, layout.KernelVMLinux)
	if !bzimage.IsELF(vmlinux) {
		return k, fmt.Errorf("no ELF vmlinux was produced: %w", errdefs.ErrInvalid)
	}
	for _, name := range []string{layout.KernelVMLinux, layout.KernelVMLinuz, layout.KernelInitrd} {
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return k, err
		}
		sum, err := fileSHA256(path)
		if err != nil {
			return k, err
		}
		k.Files = append(k.Files, api.KernelFile{Name: name, Size: fi.Size(), SHA256: sum})
	}
	modRoot := filepath.Join(dir, layout.KernelModules)
	releases, _ := os.ReadDir(modRoot)
	switch len(releases) {
	case 0:
		os.Remove(modRoot)
	case 1:
		k.Release = releases[0].Name()
		size, count, err := treeSize(filepath.Join(modRoot, k.Release))
		if err != nil {
			return k, err
		}
		if count == 0 {
			return k, fmt.Errorf("modules directory %s is empty: %w", k.Release, errdefs.ErrInvalid)
		}
		k.Modules = true
		k.Files = append(k.Files, api.KernelFile{Name: layout.KernelModules + "/" + k.Release + "/", Size: size, Count: count})
	default:
		var rs []string
		for _, r := range releases {
			rs = append(rs, r.Name())
		}
		sort.Strings(rs)
		return k, fmt.Errorf("modules for %d kernel releases (%v), want one: %w", len(rs), rs, errdefs.ErrInvalid)
	}
	for _, f := range k.Files {
		k.Size += f.Size
	}
	return k, nil
}

func treeSize(root string) (size int64, count int, err error) {
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			size += fi.Size()
			count++
		}
		return nil
	})
	return size, count, err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyTree copies a directory; symlinks are copied as links, never followed.
func copyTree(ctx context.Context, src, dst string, limit int64) error {
	var total int64
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o700)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			total += fi.Size()
			if limit > 0 && total > limit {
				return fmt.Errorf("more than the %d-byte limit: %w", limit, errdefs.ErrInvalid)
			}
			return copyFile(path, target)
		}
		return nil
	})
}
