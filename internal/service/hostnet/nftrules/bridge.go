package nftrules

import (
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/wire/api"
)

// Bridge is what bridge mode's tables are made of: the bridge and every
// attached guest.
type Bridge struct {
	// Name is the bridge's interface; Gateway its address in Subnet, the
	// guests' route and DNS server.
	Name    string
	Gateway netip.Addr
	Subnet  netip.Prefix
	// Connected are the host's directly connected networks (its LAN),
	// refused to guests but for Open (guest_lan).
	Connected, Open []netip.Prefix
	// Guests are in the order their rules are written.
	Guests []Guest
}

// Guest is one attached bridge-mode guest.
type Guest struct {
	VM, ID string
	// Owner is the uid the VM is of: guests of different owners are kept
	// apart.
	Owner uint32
	Tap   string
	MAC   net.HardwareAddr
	IP    netip.Addr
	Ports []api.PortForward
	// Egress is the guest's policy; Allowed, under an allow list, the
	// addresses its names opened.
	Egress  Egress
	Allowed []netip.Addr
}

// Tables are bridge mode's tables for b: the ip family's and the bridge
// family's, both named TableName.
func (b Bridge) Tables() []Table {
	return []Table{b.ipTable(), b.bridgeTable()}
}

// ipChains are the ip table's base chains.
type ipChains struct {
	pre, out, post, fwd, in *nftables.Chain
}

func (b Bridge) ipTable() Table {
	t := newBuilder(ipv4(TableName))
	c := ipChains{
		pre:  t.baseChain("prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest),
		out:  t.baseChain("output", nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest),
		post: t.baseChain("postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource),
		fwd:  t.baseChain("forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter),
		in:   t.baseChain("input", nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter),
	}
	b.masquerade(t, c.post)
	b.forward(t, c.fwd)
	for _, g := range b.Guests {
		publish(t, c, g)
	}
	b.input(t, c.in)
	return t.Table
}

// fromBridge matches what comes in from the bridge, a guest's.
func (b Bridge) fromBridge() []expr.Any { return ifname(expr.MetaKeyIIFNAME, b.Name, true) }

func (b Bridge) toBridge() []expr.Any { return ifname(expr.MetaKeyOIFNAME, b.Name, true) }

// masquerade: the guests' traffic leaves with the host's address.
// Published ports reached on 127.0.0.1, and a guest reaching another's
// (or its own) published port through the host, come back through the
// host too.
func (b Bridge) masquerade(t *builder, post *nftables.Chain) {
	t.rule(post, inPrefix(12, b.Subnet), ifname(expr.MetaKeyOIFNAME, b.Name, false), masq())
	t.rule(post, b.toBridge(), inPrefix(12, netip.MustParsePrefix("127.0.0.0/8")), masq())
	t.rule(post, b.toBridge(), inPrefix(12, b.Subnet), ctStatusDNAT(), masq())
}

// forward is the guests' way out, each by its policy; nothing else from
// or to the bridge is forwarded but replies and published ports.
func (b Bridge) forward(t *builder, fwd *nftables.Chain) {
	t.rule(fwd, established(), verdict(expr.VerdictAccept))
	t.rule(fwd, b.toBridge(), ctStatusDNAT(), verdict(expr.VerdictAccept))
	// A guest that routes to another owner's guest through the gateway,
	// rather than on the bridge, is refused all the same; a published
	// port, accepted above, is anyone's to reach.
	b.ownersApartRouted(t, fwd)
	t.rule(fwd, b.fromBridge(), b.toBridge(), verdict(expr.VerdictAccept))
	lan := b.lan(t)
	t.rule(fwd, b.fromBridge(), jump(lan))
	for _, g := range b.Guests {
		t.egress(fwd, slices.Concat(b.fromBridge(), addr(12, g.IP)), g.Egress, g.ID, g.Allowed, true)
	}
	t.refuse(fwd, b.fromBridge())
	t.rule(fwd, b.toBridge(), verdict(expr.VerdictDrop))
}

// lan adds the chain that refuses the host's LAN and link-local (a
// cloud's metadata service), whatever a guest's policy, unless guest_lan
// opens it. An open network returns to the policy rather than being
// accepted: guest_lan lifts the LAN's ban, not a VM's egress policy.
func (b Bridge) lan(t *builder) *nftables.Chain {
	lan := t.chain("lan")
	for _, p := range b.Open {
		t.rule(lan, inPrefix(16, p), verdict(expr.VerdictReturn))
	}
	for _, p := range slices.Concat(offLimits, b.Connected) {
		t.refuse(lan, inPrefix(16, p))
	}
	return lan
}

// publish translates g's published ports to its address: on 127.0.0.1
// when no address is given, on the host's every address for 0.0.0.0,
// and on the one given otherwise.
func publish(t *builder, c ipChains, g Guest) {
	for _, f := range g.Ports {
		dnat := slices.Concat(l4(f.UDP()), dport(f.HostPort), natTo(g.IP, f.GuestPort))
		switch f.HostIP {
		case "":
			t.rule(c.out, addr(16, netip.MustParseAddr("127.0.0.1")), dnat)
		case "0.0.0.0":
			t.rule(c.pre, fibLocal(), dnat)
			t.rule(c.out, fibLocal(), dnat)
		default:
			a := netip.MustParseAddr(f.HostIP)
			t.rule(c.pre, addr(16, a), dnat)
			t.rule(c.out, addr(16, a), dnat)
		}
	}
}

// input: of the host, a guest reaches banger's DNS forwarder and a ping
// of the bridge's address; replies to what the host opened pass.
func (b Bridge) input(t *builder, in *nftables.Chain) {
	t.rule(in, b.fromBridge(), established(), verdict(expr.VerdictAccept))
	for _, udp := range []bool{true, false} {
		t.rule(in, b.fromBridge(), addr(16, b.Gateway), l4(udp), dport(53), verdict(expr.VerdictAccept))
	}
	t.rule(in, b.fromBridge(), addr(16, b.Gateway), l4proto(unix.IPPROTO_ICMP), payload(expr.PayloadBaseTransportHeader, 0, 1), cmp(expr.CmpOpEq, []byte{8}), verdict(expr.VerdictAccept))
	t.refuse(in, b.fromBridge())
}

// bridgeTable: each tap speaks only as its guest (its MAC, its address,
// IPv4 and ARP), so that a guest cannot pose as another, nor as the
// host; and guests of different owners do not reach each other.
func (b Bridge) bridgeTable() Table {
	t := newBuilder(&nftables.Table{Family: nftables.TableFamilyBridge, Name: TableName})
	pre := t.baseChain("prerouting", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, nftables.ChainPriorityRef(-200))
	fwd := t.baseChain("forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityRef(-200))
	// First, as the rules below accept what a tap may send.
	b.ownersApartBridged(t, pre, fwd)
	for _, g := range b.Guests {
		tap := ifname(expr.MetaKeyIIFNAME, g.Tap, true)
		ip := g.IP.As4()
		t.rule(pre, tap, payload(expr.PayloadBaseLLHeader, 6, 6), cmp(expr.CmpOpNeq, g.MAC), verdict(expr.VerdictDrop))
		t.rule(pre, tap, etherType(unix.ETH_P_IP), payload(expr.PayloadBaseNetworkHeader, 12, 4), cmp(expr.CmpOpNeq, ip[:]), verdict(expr.VerdictDrop))
		t.rule(pre, tap, etherType(unix.ETH_P_ARP), payload(expr.PayloadBaseNetworkHeader, 14, 4), cmp(expr.CmpOpNeq, ip[:]), verdict(expr.VerdictDrop))
		t.rule(pre, tap, etherType(unix.ETH_P_IP), verdict(expr.VerdictAccept))
		t.rule(pre, tap, etherType(unix.ETH_P_ARP), verdict(expr.VerdictAccept))
		t.rule(pre, tap, verdict(expr.VerdictDrop))
	}
	return t.Table
}
