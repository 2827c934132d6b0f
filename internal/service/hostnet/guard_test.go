package hostnet

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/store"
)

// inNewNetns runs f on a thread of its own in a network namespace of its
// own, which goes with the thread: nothing f does reaches the host's.
func inNewNetns(t *testing.T, f func()) {
	t.Helper()
	testkit.NeedRoot(t, "a network namespace of the test's own")
	testkit.NeedTools(t, "nftables", "nft")
	testkit.NeedTools(t, "iproute2", "ip")
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread ends with the goroutine, namespace
		// and all, rather than going back to the pool.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		f()
	}()
	<-done
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Errorf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

// The guard's table, written for real in a namespace of the test's: the
// kernel takes it, it names the VMM uid range, refuses the host's own
// addresses, link-local and the connected networks but the bridge's, and
// a user-mode VM under a policy gets its DNS redirect, its set and its
// refusal, all gone when it is detached.
func TestGuardTable(t *testing.T) {
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(resolv, []byte("# test\nnameserver 192.0.2.53\nnameserver ::1\n"), 0o644)
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	inNewNetns(t, func() {
		run(t, "ip", "link", "set", "lo", "up")
		run(t, "ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1")
		run(t, "ip", "addr", "add", "198.51.100.7/24", "dev", "lan0")
		run(t, "ip", "link", "add", "br0", "type", "veth", "peer", "name", "br1")
		run(t, "ip", "addr", "add", "10.213.0.1/24", "dev", "br0")
		run(t, "ip", "link", "set", "lan0", "up")
		run(t, "ip", "link", "set", "br0", "up")

		c, err := Connected(netip.MustParsePrefix("10.213.0.0/24"))
		if err != nil || !slices.Contains(c, netip.MustParsePrefix("198.51.100.0/24")) || slices.Contains(c, netip.MustParsePrefix("10.213.0.0/24")) {
			t.Errorf("Connected = %v, %v: want the LAN, not the bridge", c, err)
		}

		g := &Guard{UIDFrom: 1900000000, UIDCount: 65536, Exclude: netip.MustParsePrefix("10.213.0.0/24"),
			Open: []netip.Prefix{netip.MustParsePrefix("198.51.100.80/32")}, Resolv: resolv, Store: st,
			Upstream: "127.0.0.1:1", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
		if err := g.Apply(); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		table := run(t, "nft", "list", "table", "ip", GuardTable)
		for _, want := range []string{"1900000000-1900065535", "fib daddr type local", "169.254.0.0/16", "198.51.100.0/24", "192.0.2.53", "198.51.100.80", "reject"} {
			if !strings.Contains(table, want) {
				t.Errorf("the guard table lacks %q:\n%s", want, table)
			}
		}
		if strings.Contains(table, "10.213.0.0/24") {
			t.Errorf("the guard refuses the bridge's subnet, which bridge mode's table governs:\n%s", table)
		}

		allow, _ := ParseEgress("allow=a.test")
		if err := g.AttachUser(context.Background(), Spec{VM: "u1", ID: "abc123", Egress: allow}, 1900000042); err != nil {
			t.Fatalf("AttachUser: %v", err)
		}
		table = run(t, "nft", "list", "table", "ip", GuardTable)
		port := g.users["u1"].port
		for _, want := range []string{"skuid 1900000042", "dnat to 127.0.0.1:" + strconv.Itoa(int(port)), "allow-abc123"} {
			if !strings.Contains(table, want) {
				t.Errorf("with u1 attached the table lacks %q:\n%s", want, table)
			}
		}
		// Its DNS listener answers its VM only: this test's own socket
		// (root's, as another user's or VM's would be) is refused, so it
		// cannot write names into u1's record. (The VM's own questions
		// are answered by its policy: e2e TestGuestNetworkBoundary.)
		m := new(dns.Msg)
		m.SetQuestion("b.test.", dns.TypeA)
		cl := &dns.Client{Timeout: 5 * time.Second}
		if r, _, err := cl.Exchange(m, "127.0.0.1:"+strconv.Itoa(int(port))); err == nil {
			t.Errorf("another uid's question to u1's listener was answered: %v", r)
		}
		if !strings.Contains(table, "skuid != 1900000042") {
			t.Errorf("the table does not keep other uids off u1's listener:\n%s", table)
		}
		if err := g.allowUser("u1", []netip.Addr{netip.MustParseAddr("203.0.113.10")}); err != nil {
			t.Fatal(err)
		}
		if set := run(t, "nft", "list", "set", "ip", GuardTable, "allow-abc123"); !strings.Contains(set, "203.0.113.10") {
			t.Errorf("the allow set after a lookup:\n%s", set)
		}
		g.DetachUser("u1")
		if table = run(t, "nft", "list", "table", "ip", GuardTable); strings.Contains(table, "1900000042") || strings.Contains(table, "allow-abc123") {
			t.Errorf("u1's rules outlived it:\n%s", table)
		}
		if _, _, err := cl.Exchange(m, "127.0.0.1:"+strconv.Itoa(int(port))); err == nil {
			t.Error("u1's DNS listener outlived it")
		}
		if err := DropGuard(); err != nil {
			t.Fatal(err)
		}
		if out, _ := exec.Command("nft", "list", "tables").CombinedOutput(); strings.Contains(string(out), GuardTable) {
			t.Errorf("DropGuard left the table: %s", out)
		}
	})
}
