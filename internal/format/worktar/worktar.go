// Package worktar archives a work tree as tar, the one format work travels
// in between guest, daemon and client. It is small on purpose: the guest
// agent links it.
package worktar

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Write archives the tree under root as tar: regular files,
// directories and symlinks (as links), with their modes, owned by root.
// The agent runs it over /work in a running guest; the daemon over a
// dumped disk.
func Write(ctx context.Context, root string, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fileErr(root, path, err)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		if d.IsDir() && rel == "lost+found" {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return fileErr(root, path, err)
		}
		link := ""
		switch {
		case fi.Mode().IsRegular(), fi.IsDir():
		case fi.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(path); err != nil {
				return fileErr(root, path, err)
			}
		default:
			return nil // sockets, fifos, devices: not work
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return fileErr(root, path, err)
		}
		defer f.Close()
		n, err := io.Copy(tw, io.LimitReader(f, fi.Size()))
		if err != nil {
			return fileErr(root, path, err)
		}
		if n != fi.Size() {
			return fmt.Errorf("%s changed size while being read", errdefs.Quote(rel))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("archive work: %w", err)
	}
	return tw.Close()
}

// fileErr names the file an error is about by its path under root,
// bounded: the daemon archives a guest's dumped disk, whose names (and
// depth) are the guest's.
func fileErr(root, path string, err error) error {
	rel, rerr := filepath.Rel(root, path)
	if rerr != nil {
		rel = path
	}
	return fmt.Errorf("%s in %s: %w", errdefs.Quote(filepath.ToSlash(rel)), root, errdefs.WithoutPath(err))
}
