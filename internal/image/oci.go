package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/banger-dev/banger/internal/api"
	"github.com/banger-dev/banger/internal/errdefs"
	"github.com/banger-dev/banger/internal/flatten"
	"github.com/banger-dev/banger/internal/layout"
	"github.com/banger-dev/banger/internal/operation"
)

// pullOCI fetches an image's layers one after the other, flattens them,
// finalizes the tree and writes rootfs.ext4 in dir.
func (s *Service) pullOCI(ctx context.Context, ref, dir string, p operation.Progress) (built, error) {
	res, err := s.d.Registry.Image(ctx, ref, func(from string) { p.Stage("download", "pulling %s", from) })
	if err != nil {
		return built{}, err
	}
	layers, err := res.Image.Layers()
	if err != nil {
		return built{}, fmt.Errorf("image %s: layers: %w", ref, err)
	}
	var total int64
	for _, l := range layers {
		if n, err := l.Size(); err == nil {
			total += n
		}
	}
	tree, err := flatten.New(dir, s.d.MaxUnpacked)
	if err != nil {
		return built{}, err
	}
	defer tree.Close()
	var done int64
	for i, l := range layers {
		d, _ := l.Digest()
		p.Stage("flatten", "layer %d of %d: %s", i+1, len(layers), d)
		rc, err := l.Compressed()
		if err != nil {
			return built{}, fmt.Errorf("layer %d (%s): %w: %w", i+1, d, err, errdefs.ErrUnavailable)
		}
		base := done
		cr := &countReader{r: rc, ctx: ctx, fn: func(n int64) { p.Bytes("download", base+n, total) }}
		err = applyLayer(tree, cr)
		if err == nil {
			// Read to the end: the registry client checks the blob's
			// digest only once it has seen all of it.
			_, err = io.Copy(io.Discard, cr)
			if err != nil {
				err = fmt.Errorf("blob does not match its digest or was cut short: %w: %w", err, errdefs.ErrChecksum)
			}
		}
		rc.Close()
		if err != nil {
			if ctx.Err() != nil {
				return built{}, ctx.Err()
			}
			return built{}, fmt.Errorf("layer %d (%s): %w", i+1, d, err)
		}
		done += cr.n
	}
	if err := s.writeDisk(ctx, tree, dir, p); err != nil {
		return built{}, err
	}
	return built{sourceKind: api.SourceOCI, source: res.From, digest: res.Digest, layers: len(layers), files: tree.Files()}, nil
}

// applyLayer decompresses one layer, whatever its compression, and merges
// it into the tree. The compression is read from the data, not trusted
// from the media type.
func applyLayer(tree *flatten.Tree, r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		gr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w: %w", err, errdefs.ErrInvalid)
		}
		defer gr.Close()
		return tree.Apply(gr)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return fmt.Errorf("zstd: %w: %w", err, errdefs.ErrInvalid)
		}
		defer zr.Close()
		return tree.Apply(zr)
	default:
		return tree.Apply(br)
	}
}

// writeDisk adds banger's own files to the tree and writes it as
// rootfs.ext4 in dir.
func (s *Service) writeDisk(ctx context.Context, tree *flatten.Tree, dir string, p operation.Progress) error {
	p.Stage("finalize", "finalizing: banger's files, hostname, resolv.conf, hosts, SSH keys")
	extras, err := s.d.Finalize.Extras()
	if err != nil {
		return err
	}
	for _, x := range extras {
		if err := tree.Add(x); err != nil {
			return fmt.Errorf("finalize: %w", err)
		}
	}
	p.Stage("ext4", "writing ext4 (%d files)", tree.Files())
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tree.WriteTar(pw)) }()
	_, err = s.ext4.FromTar(ctx, pr, filepath.Join(dir, layout.ImageRootfs))
	pr.CloseWithError(fmt.Errorf("ext4 writer stopped"))
	return err
}

type countReader struct {
	r    io.Reader
	ctx  context.Context
	n    int64
	fn   func(int64)
	last int64
}

func (c *countReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(b)
	c.n += int64(n)
	if c.fn != nil && (c.n-c.last >= 1<<20 || err == io.EOF) {
		c.last = c.n
		c.fn(c.n)
	}
	return n, err
}
