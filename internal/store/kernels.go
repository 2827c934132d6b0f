package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// InsertKernel records a published kernel and its files.
func (s *Store) InsertKernel(ctx context.Context, k api.Kernel) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO kernels
			(name, version, arch, source_kind, source, digest, created_at, release, modules, owner, shared)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			k.Name, k.Version, k.Arch, k.SourceKind, k.Source, k.Digest,
			k.CreatedAt.UTC().Format(time.RFC3339Nano), k.Release, k.Modules, k.Owner, k.Shared)
		if err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("kernel %q: %w", k.Name, errdefs.ErrConflict)
			}
			return fmt.Errorf("insert kernel %q: %w", k.Name, err)
		}
		for _, f := range k.Files {
			if _, err := tx.ExecContext(ctx, `INSERT INTO kernel_files (kernel, name, size, sha256, count) VALUES (?, ?, ?, ?, ?)`,
				k.Name, f.Name, f.Size, f.SHA256, f.Count); err != nil {
				return fmt.Errorf("insert kernel %q file %q: %w", k.Name, f.Name, err)
			}
		}
		return nil
	})
}

// DeleteKernel removes a kernel's record.
func (s *Store) DeleteKernel(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM kernels WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete kernel %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("kernel %q: %w", name, errdefs.ErrNotFound)
	}
	return nil
}

// ShareKernel makes a kernel seen by every caller.
func (s *Store) ShareKernel(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE kernels SET shared = 1 WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("share kernel %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("kernel %q: %w", name, errdefs.ErrNotFound)
	}
	return nil
}

// GetKernel returns one kernel by name.
func (s *Store) GetKernel(ctx context.Context, name string) (api.Kernel, error) {
	ks, err := s.queryKernels(ctx, `WHERE name = ?`, name)
	if err != nil {
		return api.Kernel{}, err
	}
	if len(ks) == 0 {
		return api.Kernel{}, fmt.Errorf("kernel %q: %w", name, errdefs.ErrNotFound)
	}
	return ks[0], nil
}

// ListKernels returns every kernel, by name.
func (s *Store) ListKernels(ctx context.Context) ([]api.Kernel, error) {
	return s.queryKernels(ctx, ``)
}

// CountKernels returns how many kernels are published.
func (s *Store) CountKernels(ctx context.Context) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM kernels`).Scan(&n)
	return n, err
}

func (s *Store) queryKernels(ctx context.Context, where string, args ...any) ([]api.Kernel, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, version, arch, source_kind, source, digest, created_at, release, modules, owner, shared
		FROM kernels `+where+` ORDER BY name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	defer rows.Close()
	var out []api.Kernel
	for rows.Next() {
		var k api.Kernel
		var created string
		if err := rows.Scan(&k.Name, &k.Version, &k.Arch, &k.SourceKind, &k.Source, &k.Digest, &created, &k.Release, &k.Modules, &k.Owner, &k.Shared); err != nil {
			return nil, fmt.Errorf("list kernels: %w", err)
		}
		k.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	for i := range out {
		files, err := s.kernelFiles(ctx, out[i].Name)
		if err != nil {
			return nil, err
		}
		out[i].Files = files
		for _, f := range files {
			out[i].Size += f.Size
		}
	}
	return out, nil
}

func (s *Store) kernelFiles(ctx context.Context, name string) ([]api.KernelFile, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, size, sha256, count FROM kernel_files WHERE kernel = ? ORDER BY name`, name)
	if err != nil {
		return nil, fmt.Errorf("kernel %q files: %w", name, err)
	}
	defer rows.Close()
	files := []api.KernelFile{}
	for rows.Next() {
		var f api.KernelFile
		if err := rows.Scan(&f.Name, &f.Size, &f.SHA256, &f.Count); err != nil {
			return nil, fmt.Errorf("kernel %q files: %w", name, err)
		}
		files = append(files, f)
	}
	return files, rows.Err()
}

func isUniqueViolation(err error) bool {
	var coder interface{ Code() int }
	// SQLITE_CONSTRAINT_PRIMARYKEY (1555) and SQLITE_CONSTRAINT_UNIQUE (2067).
	if errors.As(err, &coder) {
		c := coder.Code()
		return c == 1555 || c == 2067
	}
	return false
}
