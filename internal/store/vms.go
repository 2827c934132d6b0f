package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// VM is a VM's record: what the API shows plus what only the daemon
// needs to find its VMM again.
type VM struct {
	api.VM
	// ID names the VM's sockets: short, whatever the name's length.
	ID             string
	AuthorizedKeys []string
	// PIDStart is the VMM's start time (see vmm.Process).
	PIDStart uint64
	// ConsoleOffset is where the current boot's console output starts.
	ConsoleOffset int64
}

const vmColumns = `name, id, image, kernel, cpus, memory_mib, disk_bytes, ssh_port, ports, authorized_keys,
	state, pid, pid_start, host_key, console_offset, created_at, started_at, accel, work, made_by, template, snapshot, network, egress, owner, init`

func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// InsertVM records a new VM.
func (s *Store) InsertVM(ctx context.Context, v VM) error {
	ports, _ := json.Marshal(v.Ports)
	keys, _ := json.Marshal(v.AuthorizedKeys)
	_, err := s.db.ExecContext(ctx, `INSERT INTO vms (`+vmColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		v.Name, v.ID, v.Image, v.Kernel, v.CPUs, v.MemoryMB, v.DiskBytes, v.SSHPort, string(ports), string(keys),
		v.State, v.PID, int64(v.PIDStart), v.HostKey, v.ConsoleOffset, timeText(v.CreatedAt), timeText(v.StartedAt), v.Accel, jsonText(v.Work), jsonText(v.MadeBy), v.Template, v.Snapshot, v.Network, v.Egress, v.Owner, v.Init)
	if err != nil {
		if isUniqueViolation(err) {
			return fmt.Errorf("vm %q already exists: %w", v.Name, errdefs.ErrConflict)
		}
		return fmt.Errorf("insert vm %q: %w", v.Name, err)
	}
	return nil
}

// jsonText is an optional record as stored: JSON, or "" for nil.
func jsonText[T any](v *T) string {
	if v == nil {
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// fromJSONText is jsonText's inverse.
func fromJSONText[T any](s string) (*T, error) {
	if s == "" {
		return nil, nil
	}
	v := new(T)
	return v, json.Unmarshal([]byte(s), v)
}

// UpdateVM saves a VM's mutable fields: state, process, ports, host key,
// work record.
func (s *Store) UpdateVM(ctx context.Context, v VM) error {
	ports, _ := json.Marshal(v.Ports)
	res, err := s.db.ExecContext(ctx, `UPDATE vms SET state = ?, pid = ?, pid_start = ?, host_key = ?,
		console_offset = ?, ssh_port = ?, ports = ?, started_at = ?, accel = ?, work = ?, template = ? WHERE name = ?`,
		v.State, v.PID, int64(v.PIDStart), v.HostKey, v.ConsoleOffset, v.SSHPort, string(ports), timeText(v.StartedAt), v.Accel, jsonText(v.Work), v.Template, v.Name)
	if err != nil {
		return fmt.Errorf("update vm %q: %w", v.Name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("vm %q: %w", v.Name, errdefs.ErrNotFound)
	}
	return nil
}

// DeleteVM removes a VM's record.
func (s *Store) DeleteVM(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM vms WHERE name = ?`, name)
	if err != nil {
		return fmt.Errorf("delete vm %q: %w", name, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("vm %q: %w", name, errdefs.ErrNotFound)
	}
	return nil
}

// GetVM returns one VM by name.
func (s *Store) GetVM(ctx context.Context, name string) (VM, error) {
	vs, err := s.queryVMs(ctx, `WHERE name = ?`, name)
	if err != nil {
		return VM{}, err
	}
	if len(vs) == 0 {
		return VM{}, fmt.Errorf("vm %q: %w", name, errdefs.ErrNotFound)
	}
	return vs[0], nil
}

// ListVMs returns every VM, by name.
func (s *Store) ListVMs(ctx context.Context) ([]VM, error) { return s.queryVMs(ctx, ``) }

// VMsUsing names the VMs whose image (column "image"), kernel (column
// "kernel") or template (column "template") is name.
func (s *Store) VMsUsing(ctx context.Context, column, name string) ([]string, error) {
	if column != "image" && column != "kernel" && column != "template" && column != "snapshot" {
		return nil, fmt.Errorf("VMsUsing: bad column %q", column)
	}
	vs, err := s.queryVMs(ctx, `WHERE `+column+` = ?`, name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out, nil
}

func (s *Store) queryVMs(ctx context.Context, where string, args ...any) ([]VM, error) {
	// A bridge-mode VM's address is its lease's.
	rows, err := s.db.QueryContext(ctx, `SELECT `+vmColumns+`, COALESCE((SELECT ip FROM leases WHERE leases.vm = vms.name), '') FROM vms `+where+` ORDER BY name`, args...)
	if err != nil {
		return nil, fmt.Errorf("list vms: %w", err)
	}
	defer rows.Close()
	out := []VM{}
	for rows.Next() {
		var v VM
		var ports, keys, created, started, work, madeBy string
		var pidStart int64
		if err := rows.Scan(&v.Name, &v.ID, &v.Image, &v.Kernel, &v.CPUs, &v.MemoryMB, &v.DiskBytes, &v.SSHPort, &ports, &keys,
			&v.State, &v.PID, &pidStart, &v.HostKey, &v.ConsoleOffset, &created, &started, &v.Accel, &work, &madeBy, &v.Template, &v.Snapshot, &v.Network, &v.Egress, &v.Owner, &v.Init, &v.IP); err != nil {
			return nil, fmt.Errorf("list vms: %w", err)
		}
		v.PIDStart = uint64(pidStart)
		if err := json.Unmarshal([]byte(ports), &v.Ports); err != nil {
			return nil, fmt.Errorf("vm %q: ports: %w", v.Name, err)
		}
		if err := json.Unmarshal([]byte(keys), &v.AuthorizedKeys); err != nil {
			return nil, fmt.Errorf("vm %q: keys: %w", v.Name, err)
		}
		if v.Ports == nil {
			v.Ports = []api.PortForward{}
		}
		var err error
		if v.Work, err = fromJSONText[api.Work](work); err != nil {
			return nil, fmt.Errorf("vm %q: work: %w", v.Name, err)
		}
		if v.MadeBy, err = fromJSONText[api.MadeBy](madeBy); err != nil {
			return nil, fmt.Errorf("vm %q: made_by: %w", v.Name, err)
		}
		v.CreatedAt, _ = time.Parse(time.RFC3339Nano, created)
		if started != "" {
			v.StartedAt, _ = time.Parse(time.RFC3339Nano, started)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
