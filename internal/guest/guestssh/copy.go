package guestssh

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/banger-dev/banger/internal/format/tarx"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Upload copies a local file or directory tree into the guest. When
// remote is an existing directory, the copy goes inside it, as with cp.
// It returns the bytes copied.
func Upload(c *ssh.Client, local, remote string) (int64, error) {
	sc, err := sftp.NewClient(c)
	if err != nil {
		return 0, fmt.Errorf("sftp: %w", err)
	}
	defer sc.Close()
	// DST/ names a directory, made when missing; an existing directory
	// receives the copy inside it, as with cp.
	if strings.HasSuffix(remote, "/") {
		if err := sc.MkdirAll(remote); err != nil {
			return 0, fmt.Errorf("mkdir %s in the guest: %w", remote, err)
		}
	}
	if st, err := sc.Stat(remote); err == nil && st.IsDir() {
		remote = path.Join(remote, filepath.Base(local))
	}
	var total int64
	err = filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(local, p)
		dst := path.Join(remote, filepath.ToSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := sc.MkdirAll(dst); err != nil {
				return fmt.Errorf("mkdir %s in the guest: %w", dst, err)
			}
			return sc.Chmod(dst, info.Mode().Perm())
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			sc.Remove(dst)
			return sc.Symlink(target, dst)
		case !d.Type().IsRegular():
			return nil // devices, sockets, fifos: not copied
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := sc.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			return fmt.Errorf("create %s in the guest: %w", dst, err)
		}
		n, err := io.Copy(out, in)
		total += n
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s in the guest: %w", dst, err)
		}
		return sc.Chmod(dst, info.Mode().Perm())
	})
	return total, err
}

// Download copies a guest file or directory tree to the host. When local
// is an existing directory, the copy goes inside it.
func Download(c *ssh.Client, remote, local string) (int64, error) {
	sc, err := sftp.NewClient(c)
	if err != nil {
		return 0, fmt.Errorf("sftp: %w", err)
	}
	defer sc.Close()
	return download(sc, remote, local)
}

// download copies remote, over the guest's SFTP server, to local.
//
// Every guest is hostile, and its SFTP server says what lies under
// remote: names, types, link targets. So every write goes through an
// os.Root on the destination's directory, out of which nothing
// resolves; each name is checked before it becomes part of a path; a
// name listed twice is refused (a link, then a directory by the same
// name, is how a guest would have the copy write through its link); the
// guest's links are made as links, never followed; and the copy makes
// or enters only real directories, never a link to one, whether this
// copy or an earlier one made it.
func download(sc *sftp.Client, remote, local string) (int64, error) {
	info, err := sc.Lstat(remote)
	if err != nil {
		return 0, fmt.Errorf("%s in the guest: %w", remote, guestErr(err))
	}
	if strings.HasSuffix(local, "/") {
		if err := os.MkdirAll(local, 0o755); err != nil {
			return 0, err
		}
	}
	// local's directory is the user's, links and all; what the copy
	// writes is the entry named in it, which may be what an earlier copy
	// from a guest left there.
	if st, err := os.Stat(local); err == nil && st.IsDir() {
		local = filepath.Join(local, path.Base(remote))
	}
	local = filepath.Clean(local)
	dir, name := filepath.Dir(local), filepath.Base(local)
	if name == "." && info.IsDir() {
		// The guest's / (or .) into the current directory: its entries
		// go in it.
		dir, name = ".", ""
	} else if name == "." || name == ".." || name == "/" {
		return 0, fmt.Errorf("copy %s to %s: name the destination: %w", remote, local, errdefs.ErrInvalid)
	}
	if !info.IsDir() && info.Mode()&fs.ModeSymlink == 0 && !info.Mode().IsRegular() {
		return 0, nil // devices, sockets, fifos: not copied
	}
	if info.IsDir() {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return 0, err
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	c := &copier{sc: sc, root: root, local: dir}
	if name == "" {
		err = c.dir(remote, ".")
	} else {
		err = c.entry(remote, name, info)
	}
	return c.total, err
}

// copier writes what the guest lists under root, at paths made of
// checked names only.
type copier struct {
	sc    *sftp.Client
	root  *os.Root
	local string // root's path, for messages
	total int64
}

// dir copies the guest's directory remote into rel, a directory under
// the root the copy made or found as a real directory.
func (c *copier) dir(remote, rel string) error {
	list, err := c.sc.ReadDir(remote)
	if err != nil {
		return fmt.Errorf("list %s in the guest: %w", errdefs.Quote(remote), guestErr(err))
	}
	seen := make(map[string]bool, len(list))
	for _, fi := range list {
		name := fi.Name()
		if err := tarx.CheckName(name); err != nil {
			return fmt.Errorf("the guest's %s: %w", errdefs.Quote(remote), err)
		}
		if seen[name] {
			return fmt.Errorf("the guest's %s lists %s twice: a directory holds a name once: %w", errdefs.Quote(remote), errdefs.Quote(name), errdefs.ErrInvalid)
		}
		seen[name] = true
		p := path.Join(remote, name)
		if len(p) > tarx.MaxPath {
			return fmt.Errorf("%s in the guest: paths are at most %d bytes: %w", errdefs.Quote(p), tarx.MaxPath, errdefs.ErrInvalid)
		}
		if err := c.entry(p, filepath.Join(rel, name), fi); err != nil {
			return err
		}
	}
	return nil
}

// entry copies the guest's remote, which the guest says is info, to rel.
func (c *copier) entry(remote, rel string, info fs.FileInfo) error {
	switch mode := info.Mode(); {
	case mode.IsDir():
		if err := c.mkdir(rel, mode.Perm()); err != nil {
			return err
		}
		return c.dir(remote, rel)
	case mode&fs.ModeSymlink != 0:
		target, err := c.sc.ReadLink(remote)
		if err != nil {
			return fmt.Errorf("read link %s in the guest: %w", errdefs.Quote(remote), guestErr(err))
		}
		if err := tarx.CheckSymlink(target); err != nil {
			return fmt.Errorf("link %s in the guest: %w", errdefs.Quote(remote), err)
		}
		// Whatever is there goes (a link, a file, an empty directory),
		// as before; the new link is made, never followed.
		c.root.Remove(rel)
		if err := c.root.Symlink(target, rel); err != nil {
			return c.hostErr("make the link", rel, err)
		}
		return nil
	case mode.IsRegular():
		return c.file(remote, rel, mode.Perm())
	}
	return nil // devices, sockets, fifos: not copied
}

// mkdir makes rel, or takes it as it is when it is a real directory
// already: never a link to one, which a copy would write through.
func (c *copier) mkdir(rel string, perm fs.FileMode) error {
	err := c.root.Mkdir(rel, perm|0o700)
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return c.hostErr("make the directory", rel, err)
	}
	fi, err := c.root.Lstat(rel)
	if err != nil {
		return c.hostErr("look at", rel, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s in %s is a %s, not a directory: refusing to copy a directory into it: %w", errdefs.Quote(filepath.ToSlash(rel)), c.local, typeName(fi.Mode()), errdefs.ErrConflict)
	}
	return nil
}

// file copies the guest's regular file remote to rel.
func (c *copier) file(remote, rel string, perm fs.FileMode) error {
	// A link at rel (one a guest had an earlier copy make) is replaced,
	// not written through.
	if fi, err := c.root.Lstat(rel); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		if err := c.root.Remove(rel); err != nil {
			return c.hostErr("replace the link", rel, err)
		}
	}
	in, err := c.sc.Open(remote)
	if err != nil {
		return fmt.Errorf("open %s in the guest: %w", errdefs.Quote(remote), guestErr(err))
	}
	defer in.Close()
	out, err := c.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return c.hostErr("create", rel, err)
	}
	n, err := io.Copy(out, in)
	c.total += n
	if err == nil {
		// The mode the guest gave, whatever the umask took from it;
		// on the open file, so no path is resolved again.
		err = out.Chmod(perm)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s from the guest: %w", errdefs.Quote(remote), guestErr(errdefs.WithoutPath(err)))
	}
	return nil
}

// hostErr is an error of the host's file system about rel, named under
// the destination without the path the os error holds in full.
func (c *copier) hostErr(doing, rel string, err error) error {
	return fmt.Errorf("%s %s in %s: %w", doing, errdefs.Quote(filepath.ToSlash(rel)), c.local, errdefs.WithoutPath(err))
}

// guestErr bounds what the guest's SFTP server said: a status message is
// the guest's own text, of any length.
func guestErr(err error) error {
	var se *sftp.StatusError
	if errors.As(err, &se) && len(se.Error()) > 200 {
		return fmt.Errorf("the guest's SFTP server answered %s", errdefs.Quote(se.Error()))
	}
	return err
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "file"
	}
	return "special file"
}
