package guestssh

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
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
	if _, err := sc.Lstat(remote); err != nil {
		return 0, fmt.Errorf("%s in the guest: %w", remote, err)
	}
	if strings.HasSuffix(local, "/") {
		if err := os.MkdirAll(local, 0o755); err != nil {
			return 0, err
		}
	}
	if st, err := os.Stat(local); err == nil && st.IsDir() {
		local = filepath.Join(local, path.Base(remote))
	}
	var total int64
	w := sc.Walk(remote)
	for w.Step() {
		if err := w.Err(); err != nil {
			return total, err
		}
		rel := w.Path()[len(remote):]
		dst := filepath.Join(local, filepath.FromSlash(rel))
		info := w.Stat()
		switch {
		case info.IsDir():
			if err := os.MkdirAll(dst, info.Mode().Perm()|0o700); err != nil {
				return total, err
			}
			continue
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := sc.ReadLink(w.Path())
			if err != nil {
				return total, err
			}
			os.Remove(dst)
			if err := os.Symlink(target, dst); err != nil {
				return total, err
			}
			continue
		case !info.Mode().IsRegular():
			continue
		}
		in, err := sc.Open(w.Path())
		if err != nil {
			return total, fmt.Errorf("open %s in the guest: %w", w.Path(), err)
		}
		out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, info.Mode().Perm())
		if err != nil {
			in.Close()
			return total, err
		}
		n, err := io.Copy(out, in)
		total += n
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return total, fmt.Errorf("copy %s: %w", w.Path(), err)
		}
		os.Chmod(dst, info.Mode().Perm())
	}
	return total, nil
}
