package clikit

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/banger-dev/banger/internal/format/sparse"
	"github.com/banger-dev/banger/internal/format/worktar"
	"github.com/banger-dev/banger/internal/front/client"
	"github.com/banger-dev/banger/internal/wire/api"
)

// Upload sends the file or directory at path, of size bytes (as
// Readable found it), to the daemon and returns the upload's ID. The CLI
// opens it with the caller's own rights: the root daemon opens no path a
// client names, so a file the caller cannot read fails here, with the
// system's "permission denied".
func (a *App) Upload(ctx context.Context, p *Progress, flag, path string, size int64, dir bool) (string, error) {
	total := size
	var body io.Reader
	kind := api.UploadTree
	if dir {
		pr, pw := io.Pipe()
		defer pr.Close()
		go func() { pw.CloseWithError(client.BodyError(worktar.Write(ctx, path, pw))) }()
		body = pr
	} else {
		f, err := os.Open(path)
		if err != nil {
			return "", fmt.Errorf("--%s: %w", flag, err)
		}
		defer f.Close()
		// Its data only: a 10 GiB disk image holding 300 MiB sends 300.
		exts, err := sparse.DataExtents(f, total)
		if err != nil {
			return "", fmt.Errorf("--%s: %w", flag, err)
		}
		size := total
		pr, pw := io.Pipe()
		defer pr.Close()
		go func() { pw.CloseWithError(client.BodyError(sparse.Write(pw, f, exts, size))) }()
		body, kind = pr, api.UploadSparse
		total = 0 // progress counts what is sent: the data
		for _, e := range exts {
			total += e[1]
		}
	}
	p.Event(api.Event{Stage: "upload", Message: fmt.Sprintf("sending %s (%s)", path, HumanSize(total))})
	var u api.Upload
	err := client.SendCounted(p.Event, "upload", total, body, func(r io.Reader) error {
		var err error
		u, err = a.Client().Upload(ctx, kind, r)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("send %s: %w", path, err)
	}
	return u.ID, nil
}

// Readable checks that the caller can read the file (or, dir, every file
// of the tree) at path, and returns its size.
func Readable(flag, path string, dir bool) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("--%s: %w", flag, err)
	}
	if dir != fi.IsDir() {
		want := "a file"
		if dir {
			want = "a directory"
		}
		return 0, fmt.Errorf("--%s %s: want %s: %w", flag, path, want, ErrInvalidUsage)
	}
	if dir {
		n, err := readableTree(path)
		if err != nil {
			return 0, fmt.Errorf("--%s: %w", flag, err)
		}
		return n, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("--%s: %w", flag, err)
	}
	f.Close()
	return fi.Size(), nil
}

// readableTree fails on the first entry under root the caller cannot
// read, and returns the size of its files.
func readableTree(root string) (int64, error) {
	var total int64
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			if fi, err := f.Stat(); err == nil {
				total += fi.Size()
			}
			f.Close()
		}
		return nil
	})
	return total, err
}

// AbsPath is path made absolute, for the record of where files came from.
func AbsPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}
