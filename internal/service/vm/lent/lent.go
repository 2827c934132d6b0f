// Package lent records, in a VM's directory, the names of what its
// current boot was lent (files and variables from the user's
// [auth_sync]): names, never values, and on disk, so that a daemon
// restarted while the VM runs still refuses to snapshot it without
// --with-lent. The record is tied to the boot (the VMM process): a
// restart drops what was lent, and so the record stops counting.
package lent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/banger-dev/banger/internal/store"
)

// File is the record's name in a VM's directory.
const File = "lent.json"

type record struct {
	PID      int      `json:"pid"`
	PIDStart uint64   `json:"pid_start"`
	Names    []string `json:"names"`
}

// mu serializes changes of records: two lends to one VM add up.
var mu sync.Mutex

// Names is what v's current boot holds of lent credentials, recorded in
// dir, its directory.
func Names(dir string, v store.VM) []string {
	b, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		return nil
	}
	var r record
	if json.Unmarshal(b, &r) != nil || r.PID != v.PID || r.PIDStart != v.PIDStart || v.PID == 0 {
		return nil
	}
	return r.Names
}

// Add adds names to what v's current boot holds.
func Add(dir string, v store.VM, names []string) error {
	if len(names) == 0 {
		return nil
	}
	mu.Lock()
	defer mu.Unlock()
	names = merge(Names(dir, v), names)
	b, _ := json.Marshal(record{PID: v.PID, PIDStart: v.PIDStart, Names: names})
	if err := writeFileSync(filepath.Join(dir, File), b); err != nil {
		return fmt.Errorf("record what vm %s was lent: %w", v.Name, err)
	}
	return nil
}

func merge(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, n := range append(a, b...) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// writeFileSync replaces path with data whole: a crash leaves the old
// file or the new one, never half of one.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
