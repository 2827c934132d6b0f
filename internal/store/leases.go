package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/banger-dev/banger/internal/wire/api"
	"github.com/banger-dev/banger/internal/wire/errdefs"
)

// Lease is a bridge-mode VM's address on banger's bridge.
type Lease struct {
	VM  string
	IP  netip.Addr
	MAC string
}

// Lease returns vm's lease, making one when it has none: the lowest free
// address of subnet that is neither its network nor its broadcast address
// nor one of reserved (the bridge's own). fresh says it was made now.
func (s *Store) Lease(ctx context.Context, vm string, subnet netip.Prefix, reserved ...netip.Addr) (l Lease, fresh bool, err error) {
	err = s.Tx(ctx, func(tx *sql.Tx) error {
		var ip string
		err := tx.QueryRowContext(ctx, `SELECT ip, mac FROM leases WHERE vm = ?`, vm).Scan(&ip, &l.MAC)
		if err == nil {
			l.VM, l.IP, err = vm, netip.MustParseAddr(ip), nil
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		taken := map[netip.Addr]bool{}
		for _, r := range reserved {
			taken[r] = true
		}
		rows, err := tx.QueryContext(ctx, `SELECT ip FROM leases`)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := rows.Scan(&ip); err != nil {
				rows.Close()
				return err
			}
			if a, err := netip.ParseAddr(ip); err == nil {
				taken[a] = true
			}
		}
		rows.Close()
		subnet = subnet.Masked()
		for a := subnet.Addr().Next(); subnet.Contains(a) && subnet.Contains(a.Next()); a = a.Next() {
			if taken[a] {
				continue
			}
			l = Lease{VM: vm, IP: a, MAC: MACFor(a)}
			_, err := tx.ExecContext(ctx, `INSERT INTO leases (ip, vm, mac) VALUES (?, ?, ?)`, a.String(), vm, l.MAC)
			fresh = err == nil
			return err
		}
		return fmt.Errorf("no address left in %s: remove bridge-mode VMs, or give bridge_subnet a larger one: %w", subnet, errdefs.ErrConflict)
	})
	if err != nil {
		return Lease{}, false, fmt.Errorf("lease an address for vm %s: %w", vm, err)
	}
	return l, fresh, nil
}

// MACFor is the NIC address of a guest at a: locally administered, and
// derived from the address so that a lease needs no second allocator.
func MACFor(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("02:b4:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// Leases returns every lease.
func (s *Store) Leases(ctx context.Context) ([]Lease, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT vm, ip, mac FROM leases ORDER BY vm`)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	defer rows.Close()
	var ls []Lease
	for rows.Next() {
		var l Lease
		var ip string
		if err := rows.Scan(&l.VM, &ip, &l.MAC); err != nil {
			return nil, err
		}
		if l.IP, err = netip.ParseAddr(ip); err != nil {
			return nil, fmt.Errorf("lease of vm %s: %w", l.VM, err)
		}
		ls = append(ls, l)
	}
	return ls, rows.Err()
}

// DeleteLease releases vm's lease and forgets what its lookups resolved;
// a VM without one is no error.
func (s *Store) DeleteLease(ctx context.Context, vm string) error {
	return s.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE vm = ?`, vm); err != nil {
			return fmt.Errorf("release the lease of vm %s: %w", vm, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM egress WHERE vm = ?`, vm); err != nil {
			return fmt.Errorf("forget the egress of vm %s: %w", vm, err)
		}
		return nil
	})
}

// MaxResolved bounds the names and addresses kept per VM: a guest
// looking up endless made-up names must not grow the store without end.
const MaxResolved = 4096

// ErrTooManyResolved is RecordResolved's answer past MaxResolved.
var ErrTooManyResolved = fmt.Errorf("over %d names and addresses recorded: %w", MaxResolved, errdefs.ErrConflict)

// RecordResolved counts one lookup of name by vm that answered addrs
// (none: the name is recorded with an empty address). Past MaxResolved
// rows for vm, new ones are refused (ErrTooManyResolved); known ones
// still count.
func (s *Store) RecordResolved(ctx context.Context, vm, name string, addrs []netip.Addr) error {
	now := timeText(time.Now())
	keys := []string{}
	for _, a := range addrs {
		keys = append(keys, a.String())
	}
	if len(keys) == 0 {
		keys = []string{""}
	}
	return s.Tx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM egress WHERE vm = ?`, vm).Scan(&n); err != nil {
			return fmt.Errorf("record egress of vm %s: %w", vm, err)
		}
		for _, a := range keys {
			res, err := tx.ExecContext(ctx, `UPDATE egress SET count = count + 1, last = ? WHERE vm = ? AND name = ? AND addr = ?`, now, vm, name, a)
			if err != nil {
				return fmt.Errorf("record egress of vm %s: %w", vm, err)
			}
			if k, _ := res.RowsAffected(); k > 0 {
				continue
			}
			if n >= MaxResolved {
				return fmt.Errorf("vm %s: %w", vm, ErrTooManyResolved)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO egress (vm, name, addr, count, first, last) VALUES (?, ?, ?, 1, ?, ?)`, vm, name, a, now, now); err != nil {
				return fmt.Errorf("record egress of vm %s: %w", vm, err)
			}
			n++
		}
		return nil
	})
}

// ResolvedBy returns what vm's lookups resolved, by name then address.
func (s *Store) ResolvedBy(ctx context.Context, vm string) ([]api.Resolved, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, addr, count, first, last FROM egress WHERE vm = ? ORDER BY name, addr`, vm)
	if err != nil {
		return nil, fmt.Errorf("egress of vm %s: %w", vm, err)
	}
	defer rows.Close()
	rs := []api.Resolved{}
	for rows.Next() {
		var r api.Resolved
		var first, last string
		if err := rows.Scan(&r.Name, &r.Addr, &r.Count, &first, &last); err != nil {
			return nil, err
		}
		r.First, _ = time.Parse(time.RFC3339Nano, first)
		r.Last, _ = time.Parse(time.RFC3339Nano, last)
		rs = append(rs, r)
	}
	return rs, rows.Err()
}
