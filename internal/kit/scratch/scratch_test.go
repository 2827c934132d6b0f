package scratch

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/kit/testkit"
)

func TestDir(t *testing.T) {
	if got := Dir(1<<62, "/fallback"); got != "/fallback" {
		t.Errorf("a tree larger than memory goes to %s", got)
	}
	if got := Dir(-1, "/fallback"); got != "/fallback" {
		t.Errorf("an unknown size goes to %s", got)
	}
	var st unix.Statfs_t
	testkit.Need(t, unix.Statfs(Shm, &st) == nil && st.Type == unix.TMPFS_MAGIC, "no tmpfs at "+Shm+" here: mount -t tmpfs tmpfs "+Shm)
	if got := Dir(1<<20, "/fallback"); got != Shm {
		t.Errorf("a 1 MiB tree goes to %s, not memory", got)
	}
}
