package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/banger-dev/banger/internal/wire/api"
)

// ActivityRow is one event of a VM's activity record as appended.
type ActivityRow struct {
	VM string
	// Key is "" for a single event. Rows of one VM with the same
	// non-empty Key are one counted event: the stored row's count grows
	// by the row's Event.Count (1 when 0) and its last moves to the row's
	// time.
	Key   string
	Event api.ActivityEvent
}

// activityTime is how the record's times are stored: fixed width and in
// UTC, so that comparing the text (since, MAX of last) compares the
// times, which RFC3339Nano's trimmed fractions would not.
const activityTime = "2006-01-02T15:04:05.000000000Z07:00"

func activityTimeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(activityTime)
}

func parseActivityTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

// AppendActivity appends rows to their VMs' records in one transaction.
// Each VM touched, and each VM of dropped, is then held to max rows: past
// it, its oldest rows go down to nine tenths of max, so that a VM at its
// bound does not pay a delete for every batch. What goes, and dropped[vm]
// (events the caller let go of before they reached the store), is added to
// the VM's dropped count. max <= 0 keeps everything.
func (s *Store) AppendActivity(ctx context.Context, rows []ActivityRow, max int, dropped map[string]int64) error {
	if len(rows) == 0 && len(dropped) == 0 {
		return nil
	}
	touched := map[string]bool{}
	for vm := range dropped {
		touched[vm] = true
	}
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		insert, err := tx.PrepareContext(ctx, `INSERT INTO activity (vm, at, kind, key, count, last, data)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(vm, key) WHERE key != '' DO UPDATE SET
				count = activity.count + excluded.count,
				last = MAX(activity.last, excluded.last)`)
		if err != nil {
			return err
		}
		defer insert.Close()
		for _, r := range rows {
			touched[r.VM] = true
			ev := r.Event
			count := ev.Count
			if count <= 0 {
				count = 1
			}
			last := ev.Last
			if r.Key != "" && ev.Time.After(last) {
				// A counted event's last is when it last happened, the
				// first time included.
				last = ev.Time
			}
			at := activityTimeText(ev.Time)
			data := ev
			data.Time, data.Count, data.Last = time.Time{}, 0, time.Time{}
			b, err := json.Marshal(data)
			if err != nil {
				return fmt.Errorf("vm %s: encode %s event: %w", r.VM, ev.Kind, err)
			}
			if _, err := insert.ExecContext(ctx, r.VM, at, ev.Kind, r.Key, count, activityTimeText(last), string(b)); err != nil {
				return fmt.Errorf("vm %s: %w", r.VM, err)
			}
		}
		// Sorted, so that concurrent appends (there should be one writer,
		// but the store does not rely on it) take the VMs in one order.
		for _, vm := range slices.Sorted(maps.Keys(touched)) {
			n := dropped[vm]
			if max > 0 {
				trimmed, err := trimActivity(ctx, tx, vm, max)
				if err != nil {
					return fmt.Errorf("vm %s: %w", vm, err)
				}
				n += trimmed
			}
			if n <= 0 {
				continue
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO activity_dropped (vm, n) VALUES (?, ?)
				ON CONFLICT(vm) DO UPDATE SET n = activity_dropped.n + excluded.n`, vm, n); err != nil {
				return fmt.Errorf("vm %s: count dropped events: %w", vm, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append activity: %w", err)
	}
	return nil
}

// trimActivity deletes vm's oldest rows down to max*9/10 when it has more
// than max, and says how many went.
func trimActivity(ctx context.Context, tx *sql.Tx, vm string, max int) (int64, error) {
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM activity WHERE vm = ?`, vm).Scan(&n); err != nil {
		return 0, fmt.Errorf("count activity: %w", err)
	}
	if n <= int64(max) {
		return 0, nil
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM activity WHERE id IN
		(SELECT id FROM activity WHERE vm = ? ORDER BY id LIMIT ?)`, vm, n-int64(max*9/10))
	if err != nil {
		return 0, fmt.Errorf("trim activity: %w", err)
	}
	return res.RowsAffected()
}

// Activity returns vm's record in the order it was appended, and how many
// events it let go of. With a non-zero since, only the events that
// happened at or after it: a counted event is in when its last time is,
// though it began before.
func (s *Store) Activity(ctx context.Context, vm string, since time.Time) (events []api.ActivityEvent, dropped int64, err error) {
	// One read transaction: the events and the dropped count are of the
	// same moment, so that a writer trimming in between does not make an
	// event counted twice or not at all.
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, fmt.Errorf("read activity of vm %s: %w", vm, err)
	}
	defer tx.Rollback()
	events, err = readActivity(ctx, tx, vm, since)
	if err != nil {
		return nil, 0, fmt.Errorf("read activity of vm %s: %w", vm, err)
	}
	err = tx.QueryRowContext(ctx, `SELECT n FROM activity_dropped WHERE vm = ?`, vm).Scan(&dropped)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, 0, fmt.Errorf("read dropped activity of vm %s: %w", vm, err)
	}
	return events, dropped, nil
}

func readActivity(ctx context.Context, tx *sql.Tx, vm string, since time.Time) ([]api.ActivityEvent, error) {
	q := `SELECT id, at, count, last, data FROM activity WHERE vm = ?`
	args := []any{vm}
	if !since.IsZero() {
		q += ` AND (at >= ? OR last >= ?)`
		t := activityTimeText(since)
		args = append(args, t, t)
	}
	rows, err := tx.QueryContext(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	events := []api.ActivityEvent{}
	for rows.Next() {
		var id, count int64
		var at, last, data string
		if err := rows.Scan(&id, &at, &count, &last, &data); err != nil {
			return nil, err
		}
		var ev api.ActivityEvent
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			return nil, fmt.Errorf("event %d: %w", id, err)
		}
		if ev.Time, err = parseActivityTime(at); err != nil {
			return nil, fmt.Errorf("event %d: time: %w", id, err)
		}
		if ev.Last, err = parseActivityTime(last); err != nil {
			return nil, fmt.Errorf("event %d: last: %w", id, err)
		}
		ev.Count = count
		events = append(events, ev)
	}
	return events, rows.Err()
}

// DeleteActivity removes vm's record and its dropped count.
func (s *Store) DeleteActivity(ctx context.Context, vm string) error {
	err := s.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM activity WHERE vm = ?`, vm); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM activity_dropped WHERE vm = ?`, vm)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete activity of vm %s: %w", vm, err)
	}
	return nil
}
