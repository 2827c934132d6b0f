package store

import (
	"context"
	"fmt"
	"time"

	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// InsertImage records a published image.
func (s *Store) InsertImage(ctx context.Context, im api.Image) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO images
		(name, source_kind, source, digest, kernel, size, layers, files, created_at, owner, shared)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		im.Name, im.SourceKind, im.Source, im.Digest, im.Kernel, im.Size, im.Layers, im.Files,
		im.CreatedAt.UTC().Format(time.RFC3339Nano), im.Owner, im.Shared)
	if err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("image %q: %w", im.Name, errdefs.ErrConflict)
		}
		return fmt.Errorf("insert image %q: %w", im.Name, err)
	}
	return nil
}

// DeleteImage removes an image's record.
func (s *Store) DeleteImage(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM images WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete image %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	return nil
}

// ShareImage makes an image seen by every caller.
func (s *Store) ShareImage(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE images SET shared = 1 WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("share image %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	return nil
}

// GetImage returns one image by name.
func (s *Store) GetImage(ctx context.Context, name string) (api.Image, error) {
	ims, err := s.queryImages(ctx, `WHERE name = ?`, name)
	if err != nil {
		return api.Image{}, err
	}
	if len(ims) == 0 {
		return api.Image{}, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	return ims[0], nil
}

// ListImages returns every image, by name.
func (s *Store) ListImages(ctx context.Context) ([]api.Image, error) {
	return s.queryImages(ctx, ``)
}

// CountImages returns how many images are published.
func (s *Store) CountImages(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM images`).Scan(&n)
	return n, err
}

// ImagesUsingKernel names the images that boot the given kernel.
func (s *Store) ImagesUsingKernel(ctx context.Context, kernel string) ([]string, error) {
	ims, err := s.queryImages(ctx, `WHERE kernel = ?`, kernel)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, im := range ims {
		out = append(out, im.Name)
	}
	return out, nil
}

func (s *Store) queryImages(ctx context.Context, where string, args ...any) ([]api.Image, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, source_kind, source, digest, kernel, size, layers, files, created_at, owner, shared
		FROM images `+where+` ORDER BY name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	defer rows.Close()
	out := []api.Image{}
	for rows.Next() {
		var im api.Image
		var created string
		if err := rows.Scan(&im.Name, &im.SourceKind, &im.Source, &im.Digest, &im.Kernel, &im.Size, &im.Layers, &im.Files, &created, &im.Owner, &im.Shared); err != nil {
			return nil, fmt.Errorf("list images: %w", err)
		}
		im.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
		out = append(out, im)
	}
	return out, rows.Err()
}
