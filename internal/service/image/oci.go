package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/banger-dev/banger/internal/format/flatten"
	"github.com/banger-dev/banger/internal/kit/layout"
	"github.com/banger-dev/banger/internal/kit/operation"
	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
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
	if len(layers) == 1 {
		err = s.streamLayer(ctx, tree, layers[0], total, dir, p)
	} else {
		err = s.applyLayers(ctx, tree, layers, total, dir, p)
	}
	if err != nil {
		return built{}, err
	}
	return built{sourceKind: api.SourceOCI, source: res.From, digest: res.Digest, layers: len(layers), files: tree.Files()}, nil
}

// streamLayer writes rootfs.ext4 in dir from a lone layer, streamed
// straight into the ext4 writer: no spool, and inflating overlaps with
// writing.
func (s *Service) streamLayer(ctx context.Context, tree *flatten.Tree, l v1.Layer, total int64, dir string, p operation.Progress) error {
	d, _ := l.Digest()
	p.Stage("flatten", "layer 1 of 1: %s", d)
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("layer 1 (%s): %w: %w", d, err, errdefs.ErrUnavailable)
	}
	defer rc.Close()
	cr := operation.NewReader(ctx, rc, 1<<20, func(n int64) { p.Bytes("download", n, total) })
	err = s.streamDisk(ctx, tree, dir, p, func(w io.Writer, extras []flatten.Extra) (int, error) {
		n, err := decompressed(cr, func(r io.Reader) (int, error) { return tree.Stream(r, w, extras) })
		if err == nil {
			err = drain(cr)
		}
		return n, err
	})
	return layerErr(ctx, 1, d, err)
}

// applyLayers merges layers into the tree one after the other, then
// writes it as rootfs.ext4 in dir.
func (s *Service) applyLayers(ctx context.Context, tree *flatten.Tree, layers []v1.Layer, total int64, dir string, p operation.Progress) error {
	var done int64
	for i, l := range layers {
		d, _ := l.Digest()
		p.Stage("flatten", "layer %d of %d: %s", i+1, len(layers), d)
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("layer %d (%s): %w: %w", i+1, d, err, errdefs.ErrUnavailable)
		}
		base := done
		cr := operation.NewReader(ctx, rc, 1<<20, func(n int64) { p.Bytes("download", base+n, total) })
		err = applyLayer(tree, cr)
		if err == nil {
			err = drain(cr)
		}
		rc.Close()
		if err := layerErr(ctx, i+1, d, err); err != nil {
			return err
		}
		done += cr.N
	}
	return s.writeDisk(ctx, tree, dir, p)
}

// drain reads a layer's blob to its end: the registry client checks the
// blob's digest only once it has seen all of it.
func drain(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("blob does not match its digest or was cut short: %w: %w", err, errdefs.ErrChecksum)
	}
	return nil
}

// layerErr names the layer a failure came from, unless canceling caused
// it.
func layerErr(ctx context.Context, n int, d v1.Hash, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("layer %d (%s): %w", n, d, err)
}

// applyLayer decompresses one layer and merges it into the tree.
func applyLayer(tree *flatten.Tree, r io.Reader) error {
	_, err := decompressed(r, func(r io.Reader) (int, error) { return 0, tree.Apply(r) })
	return err
}

// decompressed runs fn on r decompressed.
func decompressed(r io.Reader, fn func(io.Reader) (int, error)) (int, error) {
	dr, closeFn, err := openDecompressed(r)
	if err != nil {
		return 0, err
	}
	defer closeFn()
	return fn(dr)
}

// openDecompressed decompresses r whatever its compression (gzip, zstd or
// none): read from the data, not trusted from a media type or file name.
func openDecompressed(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		gr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip: %w: %w", err, errdefs.ErrInvalid)
		}
		return gr, func() { gr.Close() }, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("zstd: %w: %w", err, errdefs.ErrInvalid)
		}
		return zr, zr.Close, nil
	default:
		return br, func() {}, nil
	}
}

// streamDisk writes rootfs.ext4 in dir from the tar stream produce writes,
// giving it the finalize extras to append.
func (s *Service) streamDisk(ctx context.Context, tree *flatten.Tree, dir string, p operation.Progress, produce func(io.Writer, []flatten.Extra) (int, error)) error {
	extras, err := s.d.Finalize.Extras()
	if err != nil {
		return err
	}
	p.Stage("ext4", "flattening, finalizing and writing ext4 in one pass")
	pr, pw := io.Pipe()
	go func() {
		_, err := produce(pw, extras)
		pw.CloseWithError(err)
	}()
	_, err = s.ext4.FromTar(ctx, pr, filepath.Join(dir, layout.ImageRootfs))
	pr.CloseWithError(fmt.Errorf("ext4 writer stopped"))
	return err
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
