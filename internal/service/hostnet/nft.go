package hostnet

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/banger-dev/banger/internal/store"
)

// TableName names banger's tables, one in the ip family (NAT, published
// ports, egress) and one in the bridge family (each tap may only speak as
// its own guest). Nothing of banger's is anywhere else, so dropping them
// undoes it all.
const TableName = "banger"

// ruleset is what the tables hold: the bridge and every attached guest.
type ruleset struct {
	bridge  string
	gateway netip.Addr
	subnet  netip.Prefix
	guests  []*attached
	// connected are the host's directly connected networks (its LAN),
	// refused to guests but for open.
	connected, open []netip.Prefix
}

// ipTable is banger's table in the ip family.
func ipTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: TableName}
}

// allowSet is the set of addresses guest id may reach under an allow
// list, in t.
func allowSet(t *nftables.Table, id string) *nftables.Set {
	return &nftables.Set{Table: t, Name: "allow-" + id, KeyType: nftables.TypeIPAddr}
}

// allowRules adds to ch an allow list's rules for what match matches: the
// set of the addresses the guest's names opened, what goes to one of
// them accepted, the rest refused.
func allowRules(c *nftables.Conn, t *nftables.Table, rule func(*nftables.Chain, ...[]expr.Any), ch *nftables.Chain, match []expr.Any, spec Spec, allowed map[netip.Addr]bool) error {
	set := allowSet(t, spec.ID)
	var elems []nftables.SetElement
	for a := range allowed {
		elems = append(elems, element(a))
	}
	if err := c.AddSet(set, elems); err != nil {
		return fmt.Errorf("allow set of vm %s: %w", spec.VM, err)
	}
	rule(ch, match, payload(expr.PayloadBaseNetworkHeader, 16, 4), []expr.Any{
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID}, &expr.Verdict{Kind: expr.VerdictAccept}})
	refuse(rule, ch, match)
	return nil
}

// openSet adds addrs to a guest's allow set in t and to allowed, at most
// store.MaxResolved addresses in all.
func openSet(t *nftables.Table, spec Spec, allowed map[netip.Addr]bool, addrs []netip.Addr) error {
	var elems []nftables.SetElement
	for _, a := range addrs {
		if !allowed[a] && len(allowed) >= store.MaxResolved {
			return fmt.Errorf("vm %s may reach %d addresses already, the most an allow list opens", spec.VM, len(allowed))
		}
		if !allowed[a] {
			allowed[a] = true
			elems = append(elems, element(a))
		}
	}
	if len(elems) == 0 {
		return nil
	}
	c, err := nftables.New()
	if err != nil {
		return err
	}
	if err := c.SetAddElements(allowSet(t, spec.ID), elems); err != nil {
		return err
	}
	return c.Flush()
}

// element is an address as a set holds it.
func element(a netip.Addr) nftables.SetElement {
	b := a.As4()
	return nftables.SetElement{Key: b[:]}
}

// addRule queues a rule of parts' expressions, in order.
func addRule(c *nftables.Conn, t *nftables.Table, ch *nftables.Chain, parts ...[]expr.Any) {
	var e []expr.Any
	for _, p := range parts {
		e = append(e, p...)
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e})
}

// write queues, on c, the replacement of banger's tables by r: the
// table is added (a no-op when it exists), deleted and made anew in one
// netlink batch, so the kernel switches from the old rules to the new at
// once and a rule made by hand in banger's table goes with it.
func (r ruleset) write(c *nftables.Conn) error {
	t := ipTable()
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	chain := func(name string, typ nftables.ChainType, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		accept := nftables.ChainPolicyAccept
		return c.AddChain(&nftables.Chain{Name: name, Table: t, Type: typ, Hooknum: hook, Priority: prio, Policy: &accept})
	}
	pre := chain("prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	out := chain("output", nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest)
	post := chain("postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	fwd := chain("forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter)
	in := chain("input", nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter)
	rule := func(ch *nftables.Chain, parts ...[]expr.Any) { addRule(c, t, ch, parts...) }
	br := r.bridge

	// Out: the guests' traffic leaves with the host's address. Published
	// ports reached on 127.0.0.1, and a guest reaching another's (or its
	// own) published port through the host, come back through the host
	// too.
	rule(post, inPrefix(12, r.subnet), ifname(expr.MetaKeyOIFNAME, br, false), masq())
	rule(post, ifname(expr.MetaKeyOIFNAME, br, true), inPrefix(12, netip.MustParsePrefix("127.0.0.0/8")), masq())
	rule(post, ifname(expr.MetaKeyOIFNAME, br, true), inPrefix(12, r.subnet), ctStatusDNAT(), masq())

	// The guests' way out, each by its policy; nothing else from or to
	// the bridge is forwarded but replies and published ports.
	rule(fwd, ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))
	rule(fwd, ifname(expr.MetaKeyOIFNAME, br, true), ctStatusDNAT(), verdict(expr.VerdictAccept))
	// A guest that routes to another owner's guest through the gateway,
	// rather than on the bridge, is refused all the same; a published
	// port, accepted above, is anyone's to reach.
	if err := r.ownersApartRouted(c, t, rule, fwd); err != nil {
		return err
	}
	rule(fwd, ifname(expr.MetaKeyIIFNAME, br, true), ifname(expr.MetaKeyOIFNAME, br, true), verdict(expr.VerdictAccept))
	// Not the host's LAN, nor link-local (a cloud's metadata service),
	// whatever a guest's policy, unless guest_lan opens it.
	// An open network returns to the policy below rather than being
	// accepted: guest_lan lifts the LAN's ban, not a VM's egress policy.
	lan := c.AddChain(&nftables.Chain{Name: "lan", Table: t})
	for _, p := range r.open {
		rule(lan, inPrefix(16, p), verdict(expr.VerdictReturn))
	}
	for _, p := range append(slices.Clone(offLimits), r.connected...) {
		refuse(rule, lan, inPrefix(16, p))
	}
	rule(fwd, ifname(expr.MetaKeyIIFNAME, br, true), []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: lan.Name}})
	for _, g := range r.guests {
		from := append(ifname(expr.MetaKeyIIFNAME, br, true), addr(12, g.lease.IP)...)
		for _, f := range g.spec.Ports {
			dnat := append(l4(f.UDP()), dport(f.HostPort)...)
			dnat = append(dnat, natTo(g.lease.IP, f.GuestPort)...)
			switch f.HostIP {
			case "":
				rule(out, addr(16, netip.MustParseAddr("127.0.0.1")), dnat)
			case "0.0.0.0":
				rule(pre, fibLocal(), dnat)
				rule(out, fibLocal(), dnat)
			default:
				a := netip.MustParseAddr(f.HostIP)
				rule(pre, addr(16, a), dnat)
				rule(out, addr(16, a), dnat)
			}
		}
		switch g.spec.Egress.Mode {
		case EgressDeny:
			refuse(rule, fwd, from)
		case EgressAllow:
			if err := allowRules(c, t, rule, fwd, from, g.spec, g.allowed); err != nil {
				return err
			}
		default:
			rule(fwd, from, verdict(expr.VerdictAccept))
		}
	}
	refuse(rule, fwd, ifname(expr.MetaKeyIIFNAME, br, true))
	rule(fwd, ifname(expr.MetaKeyOIFNAME, br, true), verdict(expr.VerdictDrop))

	// Of the host, a guest reaches banger's DNS forwarder and a ping of
	// the bridge's address; replies to what the host opened pass.
	fromBr := ifname(expr.MetaKeyIIFNAME, br, true)
	rule(in, fromBr, ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))
	for _, udp := range []bool{true, false} {
		rule(in, fromBr, addr(16, r.gateway), l4(udp), dport(53), verdict(expr.VerdictAccept))
	}
	rule(in, fromBr, addr(16, r.gateway), l4proto(unix.IPPROTO_ICMP), payload(expr.PayloadBaseTransportHeader, 0, 1), cmp(expr.CmpOpEq, []byte{8}), verdict(expr.VerdictAccept))
	refuse(rule, in, fromBr)

	// Each tap speaks only as its guest: its MAC, its address, IPv4 and
	// ARP; a guest cannot pose as another, nor as the host.
	bt := &nftables.Table{Family: nftables.TableFamilyBridge, Name: TableName}
	c.AddTable(bt)
	c.DelTable(bt)
	c.AddTable(bt)
	accept := nftables.ChainPolicyAccept
	bpre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: bt, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-200), Policy: &accept})
	bfwd := c.AddChain(&nftables.Chain{Name: "forward", Table: bt, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(-200), Policy: &accept})
	// First, as the rules below accept what a tap may send.
	if err := r.ownersApartBridged(c, bt, bpre, bfwd); err != nil {
		return err
	}
	brule := func(parts ...[]expr.Any) { addRule(c, bt, bpre, parts...) }
	for _, g := range r.guests {
		tap := ifname(expr.MetaKeyIIFNAME, g.tap, true)
		mac, _ := net.ParseMAC(g.lease.MAC)
		ip := g.lease.IP.As4()
		brule(tap, payload(expr.PayloadBaseLLHeader, 6, 6), cmp(expr.CmpOpNeq, mac), verdict(expr.VerdictDrop))
		brule(tap, etherType(unix.ETH_P_IP), payload(expr.PayloadBaseNetworkHeader, 12, 4), cmp(expr.CmpOpNeq, ip[:]), verdict(expr.VerdictDrop))
		brule(tap, etherType(unix.ETH_P_ARP), payload(expr.PayloadBaseNetworkHeader, 14, 4), cmp(expr.CmpOpNeq, ip[:]), verdict(expr.VerdictDrop))
		brule(tap, etherType(unix.ETH_P_IP), verdict(expr.VerdictAccept))
		brule(tap, etherType(unix.ETH_P_ARP), verdict(expr.VerdictAccept))
		brule(tap, verdict(expr.VerdictDrop))
	}
	return nil
}

// owner is one owner's attached guests: their taps (padded as an
// interface name is), MACs and addresses, as set elements.
type owner struct {
	uid             uint32
	taps, macs, ips [][]byte
}

// owners groups guests by owner, in the order of the owners' uids.
func owners(guests []*attached) []owner {
	by := map[uint32]*owner{}
	for _, g := range guests {
		o := by[g.spec.Owner]
		if o == nil {
			o = &owner{uid: g.spec.Owner}
			by[o.uid] = o
		}
		tap := make([]byte, unix.IFNAMSIZ)
		copy(tap, g.tap)
		mac, _ := net.ParseMAC(g.lease.MAC)
		o.taps = append(o.taps, tap)
		o.macs = append(o.macs, mac)
		o.ips = append(o.ips, element(g.lease.IP).Key)
	}
	var os []owner
	for _, uid := range slices.Sorted(maps.Keys(by)) {
		os = append(os, *by[uid])
	}
	return os
}

// ownerSets adds to t a named set per owner, "what-UID", of what keys
// picks of its guests; named, so that the rules of every pair of owners
// can share them. order is the keys' byte order as nft writes it (an
// ifname's is the host's, or nft lists the names as ""), nil for none.
func ownerSets(c *nftables.Conn, t *nftables.Table, os []owner, what string, typ nftables.SetDatatype, order binaryutil.ByteOrder, keys func(owner) [][]byte) (map[uint32]*nftables.Set, error) {
	sets := map[uint32]*nftables.Set{}
	for _, o := range os {
		set := &nftables.Set{Table: t, Name: fmt.Sprintf("%s-%d", what, o.uid), KeyType: typ, KeyByteOrder: order,
			Comment: fmt.Sprintf("%s of uid %d's guests", what, o.uid)}
		var elems []nftables.SetElement
		for _, k := range keys(o) {
			elems = append(elems, nftables.SetElement{Key: k})
		}
		if err := c.AddSet(set, elems); err != nil {
			return nil, fmt.Errorf("set of the %s of uid %d's guests: %w", what, o.uid, err)
		}
		sets[o.uid] = set
	}
	return sets, nil
}

// inSet matches what load puts in the register against set (or, with
// is false, against anything but set).
func inSet(load []expr.Any, set *nftables.Set, is bool) []expr.Any {
	return append(slices.Clone(load), &expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, Invert: !is})
}

// pairs calls f for every ordered pair of different owners.
func pairs(os []owner, f func(from, to owner)) {
	for _, from := range os {
		for _, to := range os {
			if from.uid != to.uid {
				f(from, to)
			}
		}
	}
}

// ownersApartRouted adds to fwd, for every pair of owners, the refusal
// of what one's guests send through the gateway to the other's.
func (r ruleset) ownersApartRouted(c *nftables.Conn, t *nftables.Table, rule func(*nftables.Chain, ...[]expr.Any), fwd *nftables.Chain) error {
	os := owners(r.guests)
	if len(os) < 2 {
		return nil
	}
	addrs, err := ownerSets(c, t, os, "addrs", nftables.TypeIPAddr, nil, func(o owner) [][]byte { return o.ips })
	if err != nil {
		return err
	}
	onBridge := slices.Concat(ifname(expr.MetaKeyIIFNAME, r.bridge, true), ifname(expr.MetaKeyOIFNAME, r.bridge, true))
	pairs(os, func(from, to owner) {
		refuse(rule, fwd, slices.Concat(onBridge,
			inSet(payload(expr.PayloadBaseNetworkHeader, 12, 4), addrs[from.uid], true),
			inSet(payload(expr.PayloadBaseNetworkHeader, 16, 4), addrs[to.uid], true)))
	})
	return nil
}

// ownersApartBridged adds to the bridge table bt, for every pair of
// owners, the drop of the frames one's taps send to the other's:
//
//   - in pre, a frame addressed to the other's MACs, before the bridge
//     forwards it;
//   - in fwd, a frame forwarded to the other's taps addressed to none of
//     their MACs: a broadcast (ARP's requests), a multicast, a unicast
//     the bridge floods. Its forward hook sees a flooded frame once per
//     port it goes out of, so a guest does not even learn another
//     owner's is there.
//
// The one frame from one owner's tap to another's let through is a
// frame to the gateway that br_netfilter, when the host has it, turned
// into one to the other's guest, readdressed, on the bridge: a published
// port's connection (its DNAT), which the ip table accepts. What the
// bridge itself (the host) sends or receives goes through its output
// and input hooks, not these: the gateway and DNS are everyone's.
func (r ruleset) ownersApartBridged(c *nftables.Conn, bt *nftables.Table, pre, fwd *nftables.Chain) error {
	os := owners(r.guests)
	if len(os) < 2 {
		return nil
	}
	taps, err := ownerSets(c, bt, os, "taps", nftables.TypeIFName, binaryutil.NativeEndian, func(o owner) [][]byte { return o.taps })
	if err != nil {
		return err
	}
	macs, err := ownerSets(c, bt, os, "macs", nftables.TypeEtherAddr, nil, func(o owner) [][]byte { return o.macs })
	if err != nil {
		return err
	}
	meta := func(key expr.MetaKey) []expr.Any { return []expr.Any{&expr.Meta{Key: key, Register: 1}} }
	daddr := payload(expr.PayloadBaseLLHeader, 0, 6)
	pairs(os, func(from, to owner) {
		addRule(c, bt, pre, inSet(meta(expr.MetaKeyIIFNAME), taps[from.uid], true), inSet(daddr, macs[to.uid], true), verdict(expr.VerdictDrop))
		addRule(c, bt, fwd, inSet(meta(expr.MetaKeyIIFNAME), taps[from.uid], true), inSet(meta(expr.MetaKeyOIFNAME), taps[to.uid], true),
			inSet(daddr, macs[to.uid], false), verdict(expr.VerdictDrop))
	})
	return nil
}

// dropTables queues the removal of banger's tables, if there are any.
func dropTables(c *nftables.Conn) {
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyIPv4, nftables.TableFamilyBridge} {
		t := &nftables.Table{Family: fam, Name: TableName}
		c.AddTable(t)
		c.DelTable(t)
	}
}

// refuse adds rules that refuse what match matches from a guest: TCP
// with a reset, the rest with an ICMP "administratively prohibited", so
// that a program in the guest fails at once and says why, rather than
// hanging until it times out.
func refuse(rule func(*nftables.Chain, ...[]expr.Any), ch *nftables.Chain, match []expr.Any) {
	rule(ch, match, l4proto(unix.IPPROTO_TCP), []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST}})
	rule(ch, match, []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 13}})
}

func payload(base expr.PayloadBase, off, n uint32) []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n}}
}

func cmp(op expr.CmpOp, data []byte) []expr.Any {
	return []expr.Any{&expr.Cmp{Op: op, Register: 1, Data: data}}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }

// ifname matches the input or output interface's name (or, with
// is false, any other).
func ifname(key expr.MetaKey, name string, is bool) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	op := expr.CmpOpEq
	if !is {
		op = expr.CmpOpNeq
	}
	return append([]expr.Any{&expr.Meta{Key: key, Register: 1}}, cmp(op, b)...)
}

// addr matches the IPv4 source (off 12) or destination (off 16) address.
func addr(off uint32, a netip.Addr) []expr.Any {
	b := a.As4()
	return append(payload(expr.PayloadBaseNetworkHeader, off, 4), cmp(expr.CmpOpEq, b[:])...)
}

// inPrefix matches an IPv4 source (off 12) or destination (off 16) in p.
func inPrefix(off uint32, p netip.Prefix) []expr.Any {
	mask := net.CIDRMask(p.Bits(), 32)
	b := p.Masked().Addr().As4()
	return append(payload(expr.PayloadBaseNetworkHeader, off, 4),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b[:]})
}

func l4proto(p byte) []expr.Any {
	return append([]expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}}, cmp(expr.CmpOpEq, []byte{p})...)
}

func l4(udp bool) []expr.Any {
	if udp {
		return l4proto(unix.IPPROTO_UDP)
	}
	return l4proto(unix.IPPROTO_TCP)
}

func dport(p int) []expr.Any {
	return append(payload(expr.PayloadBaseTransportHeader, 2, 2), cmp(expr.CmpOpEq, binaryutil.BigEndian.PutUint16(uint16(p)))...)
}

func etherType(t uint16) []expr.Any {
	return append([]expr.Any{&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1}}, cmp(expr.CmpOpEq, binaryutil.BigEndian.PutUint16(t))...)
}

// ctState matches a connection in any of the states.
func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// ctStatusDNAT matches a connection whose destination was translated: a
// published port's.
func ctStatusDNAT() []expr.Any {
	const ipsDstNAT = 0x20
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// fibLocal matches a destination that is one of the host's addresses.
func fibLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// natTo translates the destination to a guest's address and port.
func natTo(a netip.Addr, port int) []expr.Any {
	b := a.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: b[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}
