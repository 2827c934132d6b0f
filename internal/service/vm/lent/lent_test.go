package lent

import (
	"reflect"
	"testing"

	"github.com/banger-dev/banger/internal/store"
	"github.com/banger-dev/banger/internal/wire/api"
)

func TestRecordIsPerBoot(t *testing.T) {
	dir := t.TempDir()
	boot := store.VM{VM: api.VM{Name: "w", PID: 42}, PIDStart: 7}
	if err := Add(dir, boot, []string{"~/.netrc"}); err != nil {
		t.Fatal(err)
	}
	if err := Add(dir, boot, []string{"$GH_TOKEN", "~/.netrc"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		v    store.VM
		want []string
	}{
		{"the boot lent to", boot, []string{"$GH_TOKEN", "~/.netrc"}},
		{"a later boot (same pid, new start)", store.VM{VM: api.VM{Name: "w", PID: 42}, PIDStart: 8}, nil},
		{"a stopped VM", store.VM{VM: api.VM{Name: "w"}}, nil},
	} {
		if got := Names(dir, c.v); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
