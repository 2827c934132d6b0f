//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/kit/testkit"
	"github.com/banger-dev/banger/internal/vmm"
	"github.com/banger-dev/banger/internal/wire/api"
)

// Addresses of the namespaces the network test makes: "host" is where the
// daemon, its VMMs and the CLI run; "outside" plays the internet, reached
// from host through a veth pair and host's default route.
const (
	hostAddr     = "198.18.0.1"
	outsideAddr  = "198.18.0.2"
	internetAddr = "203.0.113.7"
	// hostExtraAddr is one more of host's own addresses; metadataAddr a
	// cloud's metadata service, on a link-local address of outside's
	// that host reaches directly.
	hostExtraAddr = "192.0.2.77"
	metadataAddr  = "169.254.169.254"
)

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNetns makes a network namespace, deleted when the test ends.
func newNetns(t *testing.T, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", prefix, os.Getpid())
	ipCmd(t, "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ipCmd(t, "-n", name, "link", "set", "lo", "up")
	return name
}

// inNetns runs f on an OS thread moved into namespace ns: the sockets f
// makes belong to ns for good.
func inNetns(t *testing.T, ns string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Never unlocked: the thread, left in ns, ends with this
		// goroutine rather than going back to the scheduler's pool.
		runtime.LockOSThread()
		fd, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Errorf("open netns %s: %v", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			t.Errorf("enter netns %s: %v", ns, err)
			return
		}
		f()
	}()
	<-done
}

// netEnv is a stopped daemon with the test kernel and the busybox image
// (busybox-1), pulled while the registry on this host's 127.0.0.1 is in
// reach, and its config, for a restart inside a namespace. Each of more
// is given the env and the registry's address, to pull more there.
func netEnv(t *testing.T, more ...func(e *env, reg string)) (*env, string) {
	t.Helper()
	e, ref := vmEnv(t)
	e.mustBanger("kernel", "pull", "test-deb")
	e.mustBanger("image", "pull", ref)
	for _, f := range more {
		f(e, strings.TrimSuffix(ref, "/test/busybox:1"))
	}
	b, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.term(); err != nil {
		t.Fatal(err)
	}
	// Restarted in a namespace, the daemon guards its guests as it would
	// a real host.
	base := strings.Replace(string(b), noGuard, "", 1)
	if err := os.WriteFile(e.config, []byte(base), 0o644); err != nil {
		t.Fatal(err)
	}
	return e, base
}

// hostAndOutside makes two namespaces joined by a veth pair: host
// (hostAddr, its default route through outside) and outside
// (outsideAddr), which plays the internet.
func hostAndOutside(t *testing.T, hostPrefix, outsidePrefix string) (host, outside string) {
	t.Helper()
	host, outside = newNetns(t, hostPrefix), newNetns(t, outsidePrefix)
	ipCmd(t, "-n", host, "link", "add", "bgv0", "type", "veth", "peer", "name", "bgv1", "netns", outside)
	ipCmd(t, "-n", host, "addr", "add", hostAddr+"/24", "dev", "bgv0")
	ipCmd(t, "-n", host, "link", "set", "bgv0", "up")
	ipCmd(t, "-n", outside, "addr", "add", outsideAddr+"/24", "dev", "bgv1")
	ipCmd(t, "-n", outside, "link", "set", "bgv1", "up")
	ipCmd(t, "-n", host, "route", "add", "default", "via", outsideAddr)
	return host, outside
}

// serveIn serves "reached NAME" over HTTP on addr in namespace ns and
// returns the port.
func serveIn(t *testing.T, ns, addr, name string) int {
	t.Helper()
	ln := listenIn(t, ns, addr)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "reached "+name)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// listenIn listens on TCP addr in namespace ns.
func listenIn(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	inNetns(t, ns, func() {
		var err error
		if ln, err = net.Listen("tcp4", addr); err != nil {
			t.Errorf("listen on %s in %s: %v", addr, ns, err)
		}
	})
	if ln == nil {
		t.FailNow()
	}
	return ln
}

// getIn fetches http://addr/path from inside namespace ns.
func getIn(t *testing.T, ns, addr, path string) (string, error) {
	var body string
	var err error
	inNetns(t, ns, func() {
		var c net.Conn
		if c, err = net.DialTimeout("tcp4", addr, 3*time.Second); err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path)
		var b []byte
		b, err = io.ReadAll(c)
		body = string(b)
	})
	return body, err
}

// guestGet fetches a URL from inside vm with busybox's wget; ok is false
// when no connection was made (the name did not resolve, the connection
// was refused) or no answer came within 5s. Any other
// failure fails the test: a probe that cannot run proves nothing.
func (e *env) guestGet(vm, url string) (body string, ok bool) {
	e.t.Helper()
	out, errOut, code := e.banger("vm", "exec", vm, "--", "busybox", "timeout", "5", "busybox", "wget", "-q", "-O", "-", url)
	switch {
	case code == 0:
		return out, true
	case code == 143 || strings.Contains(errOut, "can't connect") || strings.Contains(errOut, "timed out") || strings.Contains(errOut, "bad address"):
		return out, false
	}
	e.t.Fatalf("guest wget %s: exit %d, not a failure to connect:\n%s%s", url, code, out, errOut)
	return "", false
}

// passtOf returns the pid of the passt process running as uid.
func passtOf(uid int) int {
	for _, pid := range pidsWith("--no-map-gw") {
		if u, err := vmm.UID(pid); err == nil && u == uid {
			return pid
		}
	}
	return 0
}

// TestGuestNetworkBoundary holds the line between a guest and its host:
// the daemon runs in a network namespace standing for the host, with a
// server on its loopback that no guest may reach by any address, and a
// route to a second namespace standing for the internet, which guests do
// reach; published ports answer on the host's 127.0.0.1 only. The same
// probe against qemu's own slirp (user_net = "slirp") does reach the
// loopback server, so a probe that cannot connect proves something.
func TestGuestNetworkBoundary(t *testing.T) {
	t.Parallel() // its host is a namespace of its own; only TestBridgeNetwork watches the real one
	testkit.NeedRoot(t, "network namespaces")
	testkit.NeedTools(t, "iproute2", "ip")
	testkit.NeedTools(t, "passt", "passt")
	e, base := netEnv(t)
	host, outside := hostAndOutside(t, "bgh", "bgo")
	ipCmd(t, "-n", outside, "addr", "add", internetAddr+"/32", "dev", "lo")
	loop := serveIn(t, host, "127.0.0.1:0", "host-loopback")
	web := serveIn(t, outside, internetAddr+":0", "internet")
	internet := fmt.Sprintf("http://%s:%d/", internetAddr, web)
	// Every address a guest might try for the host's loopback: the
	// gateway (slirp's alias for it), the DNS address, the guest's own,
	// its loopback, the host's address on its network.
	loopURLs := []string{}
	for _, a := range []string{"10.0.2.2", "10.0.2.3", "10.0.2.15", "127.0.0.1", hostAddr} {
		loopURLs = append(loopURLs, fmt.Sprintf("http://%s:%d/", a, loop))
	}
	// The rest of the host: a server on all its addresses, tried at each
	// (one more on its loopback device, as a VPN's or a container
	// bridge's would be), one on its LAN (the outside's address on the
	// link they share) and a metadata service on a link-local address.
	ipCmd(t, "-n", host, "addr", "add", hostExtraAddr+"/32", "dev", "lo")
	ipCmd(t, "-n", outside, "addr", "add", metadataAddr+"/32", "dev", "lo")
	ipCmd(t, "-n", host, "route", "add", metadataAddr+"/32", "dev", "bgv0")
	anyPort := serveIn(t, host, "0.0.0.0:0", "host-any")
	hostURLs := []string{}
	for _, a := range []string{"127.0.0.1", hostAddr, hostExtraAddr, "10.0.2.2"} {
		hostURLs = append(hostURLs, fmt.Sprintf("http://%s:%d/", a, anyPort))
	}
	hostURLs = append(hostURLs,
		fmt.Sprintf("http://%s:%d/", outsideAddr, serveIn(t, outside, outsideAddr+":0", "lan")),
		fmt.Sprintf("http://%s:%d/", metadataAddr, serveIn(t, outside, metadataAddr+":0", "metadata")))
	e.netns = host
	e.start()
	// noHost fails the test if vm reaches any of the host's servers, its
	// LAN's or the metadata service.
	noHost := func(vm string) {
		for _, u := range hostURLs {
			if body, ok := e.guestGet(vm, u); ok {
				e.t.Errorf("vm %s reached %s: %q", vm, u, body)
			}
		}
	}
	// noLoopback fails the test if vm reaches the loopback server.
	noLoopback := func(vm string) {
		for _, u := range loopURLs {
			if body, ok := e.guestGet(vm, u); ok || strings.Contains(body, "host-loopback") {
				e.t.Errorf("vm %s reached the host's loopback server at %s: %q", vm, u, body)
			}
		}
	}
	// serve has vm serve word on its port 8000 and checks it answers at
	// addr, from the host's side.
	serve := func(vm, word, addr string) {
		e.mustBanger("vm", "exec", vm, "--", "sh", "-c", "echo "+word+" > /root/index.html && busybox httpd -p 8000 -h /root")
		if body, err := getIn(e.t, host, addr, "/index.html"); err != nil || !strings.HasSuffix(body, word+"\n") {
			e.t.Errorf("vm %s's published port at %s: %v %q", vm, addr, err, body)
		}
	}

	t.Run("passt: the outside yes, the host's loopback no, published ports on 127.0.0.1", func(t *testing.T) {
		defer e.use(t)()
		if st := e.status(); !strings.HasPrefix(st.Network, "passt:") {
			t.Fatalf("status network %q, want passt (installed, and the namespace has a default route)", st.Network)
		}
		// A caller who is not root may not have the root daemon bind a
		// privileged port for it.
		if _, errOut, code := e.bangerAsNobody("vm", "create", "--name", "low", "--image", "busybox-1", "-p", "80:8000"); code == 0 || !strings.Contains(errOut, "privileged") {
			t.Errorf("-p 80:8000 as nobody: exit %d, %s", code, errOut)
		}
		_, errOut, _ := e.banger("vm", "run", "--name", "n1", "--image", "busybox-1", "-p", "18000:8000", "-p", "0.0.0.0:18002:8000", "--", "true")
		if !strings.Contains(errOut, "network passt:") {
			t.Errorf("progress does not say which network: %s", errOut)
		}
		// eth0 takes passt's largest frames.
		if mtu := strings.TrimSpace(e.mustBanger("vm", "exec", "n1", "--", "cat", "/sys/class/net/eth0/mtu")); mtu != "65520" {
			t.Errorf("guest eth0 MTU %s under passt, want 65520", mtu)
		}
		if body, ok := e.guestGet("n1", internet); !ok || body != "reached internet" {
			t.Errorf("guest GET %s: ok=%v %q; want the outside reached", internet, ok, body)
		}
		noLoopback("n1")
		if st := e.status(); !strings.HasPrefix(st.Guard, "on:") {
			t.Errorf("status guard %q, want on", st.Guard)
		}
		noHost("n1")
		serve("n1", "published", "127.0.0.1:18000")
		if _, err := getIn(t, host, hostAddr+":18000", "/index.html"); err == nil {
			t.Errorf("published port answers on %s too: -p publishes on 127.0.0.1 only", hostAddr)
		}
		if body, err := getIn(t, host, hostAddr+":18002", "/index.html"); err != nil || !strings.HasSuffix(body, "published\n") {
			t.Errorf("-p 0.0.0.0:18002:8000 on the host's %s: %v %q", hostAddr, err, body)
		}
		// passt runs as the VM's own uid, and goes when its VMM does.
		v := e.vm("n1")
		uid := vmmUID(t, v.PID)
		pid := passtOf(uid)
		if pid == 0 {
			t.Fatalf("no passt runs as the VMM's uid %d", uid)
		}
		if st := procStatus(t, pid, "Seccomp"); st != "2" {
			t.Errorf("passt's Seccomp: %q, want 2 (filtering)", st)
		}
		e.killVMM("n1")
		for i := 0; i < 100 && passtOf(uid) != 0; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if passtOf(uid) != 0 {
			t.Errorf("passt (pid %d) outlived its VMM", pid)
		}
	})

	t.Run("egress under the user-mode network: deny, allow by name and address, learn, from; rebinding opens nothing", func(t *testing.T) {
		defer e.use(t)()
		// The outside's DNS server names a.test, b.test, c.test (served
		// there) and names that answer the host's own addresses.
		for name, ip := range zone {
			ipCmd(t, "-n", outside, "addr", "add", ip+"/32", "dev", "lo")
			serveIn(t, outside, fmt.Sprintf("%s:%d", ip, webPort), strings.TrimSuffix(name, "."))
		}
		asked := serveDNS(t, outside, outsideAddr+":53")
		e.restartWith(base, "dns_upstream = \""+outsideAddr+"\"\n")
		url := func(host string) string { return fmt.Sprintf("http://%s:%d/", host, webPort) }
		run := func(name, egress string) {
			t.Helper()
			_, errOut, code := e.banger("vm", "run", "--name", name, "--image", "busybox-1", "--egress", egress, "--", "true")
			if code != 0 || !strings.Contains(errOut, "egress "+egress) {
				t.Fatalf("vm run --egress %s: exit %d\n%s", egress, code, errOut)
			}
		}

		run("udeny", "deny")
		before := asked("a.test.")
		for _, u := range []string{url("a.test"), url(zone["a.test."])} {
			if body, ok := e.guestGet("udeny", u); ok {
				t.Errorf("deny reached %s: %q", u, body)
			}
		}
		if asked("a.test.") != before {
			t.Error("deny's lookup reached the upstream DNS server")
		}

		run("uallow", "allow=a.test,loop.test,meta.test,host.test")
		if body, ok := e.guestGet("uallow", url("a.test")); !ok || body != "reached a.test" {
			t.Errorf("allow=a.test: GET a.test: ok=%v %q", ok, body)
		}
		if out, _, _ := e.banger("vm", "exec", "uallow", "--", "busybox", "nslookup", "b.test"); !strings.Contains(out, "NXDOMAIN") && !strings.Contains(out, "can't find") {
			t.Errorf("allow=a.test: b.test resolved:\n%s", out)
		}
		for _, u := range []string{url(zone["b.test."]), url("loop.test"), url("meta.test"), url("host.test")} {
			if body, ok := e.guestGet("uallow", u); ok {
				t.Errorf("allow=a.test,... reached %s: %q", u, body)
			}
		}
		var opened []string
		for _, r := range e.egressOf("uallow").Resolved {
			if r.Addr != "" {
				opened = append(opened, r.Name+" "+r.Addr)
			}
		}
		if len(opened) != 1 || opened[0] != "a.test "+zone["a.test."] {
			t.Errorf("allow's record: only a.test's public address opens the set, got %v", opened)
		}

		run("ulearn", "learn")
		for _, h := range []string{"a.test", "b.test"} {
			if body, ok := e.guestGet("ulearn", url(h)); !ok || body != "reached "+h {
				t.Errorf("learn: GET %s: ok=%v %q", h, ok, body)
			}
		}
		learned := map[string]string{}
		for _, r := range e.egressOf("ulearn").Resolved {
			learned[r.Name] = r.Addr
		}
		if learned["a.test"] != zone["a.test."] || learned["b.test"] != zone["b.test."] {
			t.Errorf("learn recorded %v", learned)
		}
		_, errOut, code := e.banger("vm", "run", "--name", "ufrom", "--image", "busybox-1", "--egress", "from=ulearn", "--", "true")
		if code != 0 || !strings.Contains(errOut, "egress allow=a.test,b.test") {
			t.Fatalf("--egress from=ulearn: exit %d\n%s", code, errOut)
		}
		if body, ok := e.guestGet("ufrom", url("b.test")); !ok || body != "reached b.test" {
			t.Errorf("from=ulearn: GET b.test: ok=%v %q", ok, body)
		}
		if body, ok := e.guestGet("ufrom", url(zone["c.test."])); ok {
			t.Errorf("from=ulearn reached c.test's address: %q", body)
		}
		// A stop takes a VM off its rules; a start puts it back under them.
		e.mustBanger("vm", "stop", "udeny")
		e.mustBanger("vm", "start", "udeny")
		if body, ok := e.guestGet("udeny", url(zone["a.test."])); ok {
			t.Errorf("deny after a restart reached a.test's address: %q", body)
		}
		e.mustBanger("vm", "rm", "-f", "udeny", "uallow", "ulearn", "ufrom")
		e.restartWith(base, "")
	})

	t.Run("--net none: nothing reached, under passt too; the daemon still reaches the agent", func(t *testing.T) {
		defer e.use(t)()
		if _, errOut, code := e.banger("vm", "create", "--name", "none-p", "--image", "busybox-1", "--net", "none", "-p", "18005:80"); code == 0 || !strings.Contains(errOut, "publishes no ports") {
			t.Errorf("--net none -p: exit %d, %s", code, errOut)
		}
		_, errOut, _ := e.banger("vm", "run", "--name", "n0", "--image", "busybox-1", "--net", "none", "--", "true")
		if !strings.Contains(errOut, "network none") {
			t.Errorf("progress does not say the network is none: %s", errOut)
		}
		if v := e.vm("n0"); v.Network != "none" || v.State != "running" {
			t.Fatalf("vm n0: %s, network %q", v.State, v.Network)
		}
		if body, ok := e.guestGet("n0", internet); ok {
			t.Errorf("--net none reached %s: %q", internet, body)
		}
		noLoopback("n0")
		e.mustBanger("vm", "rm", "-f", "n0")
	})

	t.Run("isolated: nothing reached, published ports answer", func(t *testing.T) {
		defer e.use(t)()
		e.restartWith(base, "user_net = \"isolated\"\n")
		e.mustBanger("vm", "run", "--name", "n2", "--image", "busybox-1", "-p", "18001:8000", "--", "true")
		if mtu := strings.TrimSpace(e.mustBanger("vm", "exec", "n2", "--", "cat", "/sys/class/net/eth0/mtu")); mtu != "1500" {
			t.Errorf("guest eth0 MTU %s under slirp, want the kernel's 1500", mtu)
		}
		if body, ok := e.guestGet("n2", internet); ok {
			t.Errorf("isolated guest reached %s: %q", internet, body)
		}
		noLoopback("n2")
		serve("n2", "isolated", "127.0.0.1:18001")
	})

	t.Run("slirp, asked for, opens the host's loopback: the probe sees it", func(t *testing.T) {
		defer e.use(t)()
		e.restartWith(base, "user_net = \"slirp\"\n")
		if st := e.status(); !strings.HasPrefix(st.Network, "slirp:") || !strings.Contains(st.Network, "loopback") {
			t.Errorf("status network %q does not warn of the host's loopback", st.Network)
		}
		e.mustBanger("vm", "run", "--name", "n3", "--image", "busybox-1", "--", "true")
		u := fmt.Sprintf("http://10.0.2.2:%d/", loop)
		if body, ok := e.guestGet("n3", u); !ok || body != "reached host-loopback" {
			t.Errorf("under slirp the guest should reach the host's loopback at %s (else the probe above proves nothing): ok=%v %q", u, ok, body)
		}
	})
}

// egressOf is `vm egress VM -o json`.
func (e *env) egressOf(vm string) api.Egress {
	e.t.Helper()
	var eg api.Egress
	if err := json.Unmarshal([]byte(e.mustBanger("vm", "egress", vm, "-o", "json")), &eg); err != nil {
		e.t.Fatal(err)
	}
	return eg
}
