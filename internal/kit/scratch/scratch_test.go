package scratch

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestDir(t *testing.T) {
	if got := Dir(1<<62, "/fallback"); got != "/fallback" {
		t.Errorf("a tree larger than memory goes to %s", got)
	}
	if got := Dir(-1, "/fallback"); got != "/fallback" {
		t.Errorf("an unknown size goes to %s", got)
	}
	var st unix.Statfs_t
	if unix.Statfs(Shm, &st) != nil || st.Type != unix.TMPFS_MAGIC {
		t.Skip("no tmpfs at /dev/shm here")
	}
	if got := Dir(1<<20, "/fallback"); got != Shm {
		t.Errorf("a 1 MiB tree goes to %s, not memory", got)
	}
}
