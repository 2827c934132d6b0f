package nftrules

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The tests judge banger's rules by running packets through them: eval
// interprets the expressions a table is made of as the kernel's
// nf_tables would, for the ones banger writes, so that a test states what
// happens to a guest's packet rather than which bytes a rule has. An
// expression it does not know fails the test: a rule it cannot read is
// not passed unread.

// packet is a packet (or, in the bridge family, a frame) as a hook sees
// it.
type packet struct {
	iif, oif string
	// srcMAC and dstMAC are the frame's, in the bridge family.
	srcMAC, dstMAC net.HardwareAddr
	// ether is the frame's ethertype: IPv4 when 0.
	ether uint16
	// src and dst are the IPv4 addresses, or ARP's sender and target.
	src, dst netip.Addr
	proto    byte
	dport    uint16
	// icmp is an ICMP packet's type.
	icmp byte
	// established is a reply (or related), not a new connection; dnat a
	// connection whose destination a published port translated.
	established, dnat bool
	// uid is the sending socket's, when sock.
	sock bool
	uid  uint32
}

func tcp(src, dst string, port uint16) packet {
	return packet{src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), proto: unix.IPPROTO_TCP, dport: port}
}

func udp(src, dst string, port uint16) packet {
	p := tcp(src, dst, port)
	p.proto = unix.IPPROTO_UDP
	return p
}

func ping(src, dst string) packet {
	return packet{src: netip.MustParseAddr(src), dst: netip.MustParseAddr(dst), proto: unix.IPPROTO_ICMP, icmp: 8}
}

func (p packet) via(iif, oif string) packet { p.iif, p.oif = iif, oif; return p }

func (p packet) from(uid uint32) packet { p.sock, p.uid = true, uid; return p }

func (p packet) frame(src, dst string) packet {
	p.srcMAC, p.dstMAC = mac(src), mac(dst)
	return p
}

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func (p packet) etherType() uint16 {
	if p.ether == 0 {
		return unix.ETH_P_IP
	}
	return p.ether
}

// header is the bytes a payload expression reads at base.
func (p packet) header(base expr.PayloadBase) []byte {
	switch base {
	case expr.PayloadBaseLLHeader:
		return slices.Concat(p.dstMAC, p.srcMAC, binaryutil.BigEndian.PutUint16(p.etherType()))
	case expr.PayloadBaseNetworkHeader:
		src, dst := p.src.As4(), p.dst.As4()
		switch p.etherType() {
		case unix.ETH_P_IP:
			h := make([]byte, 20)
			h[0], h[9] = 0x45, p.proto
			copy(h[12:], src[:])
			copy(h[16:], dst[:])
			return h
		case unix.ETH_P_ARP:
			h := slices.Concat([]byte{0, 1, 8, 0, 6, 4, 0, 1}, p.srcMAC, src[:], make([]byte, 6), dst[:])
			return h
		}
	case expr.PayloadBaseTransportHeader:
		switch p.proto {
		case unix.IPPROTO_TCP, unix.IPPROTO_UDP:
			return slices.Concat([]byte{0xc0, 0}, binaryutil.BigEndian.PutUint16(p.dport), make([]byte, 4))
		case unix.IPPROTO_ICMP:
			return []byte{p.icmp, 0, 0, 0}
		}
	}
	return nil
}

// host is where the rules run: the host's own addresses, as fib knows
// them.
type host struct {
	addrs []netip.Addr
}

// eval runs p through the base chain named chain of table t and says
// what becomes of it: "accept", "drop", "reset" (a TCP reset),
// "prohibited" (ICMP administratively prohibited), "masquerade" or
// "dnat ADDR:PORT". A chain that ends without a verdict accepts, as
// banger's base chains' policy is accept.
func (h host) eval(tb testing.TB, t Table, chain string, p packet) string {
	tb.Helper()
	base := slices.IndexFunc(t.Chains, func(c *nftables.Chain) bool { return c.Name == chain })
	if base < 0 || t.Chains[base].Hooknum == nil {
		tb.Fatalf("table %s has no base chain %s", t.Table.Name, chain)
	}
	if p := t.Chains[base].Policy; p == nil || *p != nftables.ChainPolicyAccept {
		tb.Fatalf("chain %s's policy is not accept", chain)
	}
	m := &machine{tb: tb, t: t, p: p, host: h}
	if v, final := m.chain(chain); final {
		return v
	}
	return "accept"
}

type machine struct {
	tb    testing.TB
	t     Table
	p     packet
	host  host
	depth int
}

// chain runs the rules of the chain named name; final says whether one
// had the last word (or the chain returned, or ended, without one).
func (m *machine) chain(name string) (v string, final bool) {
	if m.depth++; m.depth > 16 {
		m.tb.Fatalf("chain %s: jumps loop", name)
	}
	defer func() { m.depth-- }()
	for _, r := range m.t.Rules {
		if r.Chain.Name != name {
			continue
		}
		v := m.rule(r)
		switch {
		case v == "":
		case v == "return":
			return "", false
		case len(v) > 5 && v[:5] == "jump ":
			if v, final := m.chain(v[5:]); final {
				return v, true
			}
		case len(v) > 5 && v[:5] == "goto ":
			return m.chain(v[5:])
		default:
			return v, true
		}
	}
	return "", false
}

// rule runs r's expressions on the packet: "" when one of them does
// not match (or r has no verdict), else what r decides.
func (m *machine) rule(r *nftables.Rule) string {
	regs := map[uint32][]byte{}
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Meta:
			v, ok := m.meta(e.Key)
			if !ok {
				return ""
			}
			regs[e.Register] = v
		case *expr.Payload:
			h := m.p.header(e.Base)
			if int(e.Offset+e.Len) > len(h) {
				return ""
			}
			regs[e.DestRegister] = h[e.Offset : e.Offset+e.Len]
		case *expr.Cmp:
			got := regs[e.Register]
			if len(got) < len(e.Data) {
				m.tb.Fatalf("cmp of %d bytes on a register of %d", len(e.Data), len(got))
			}
			if e.Op != expr.CmpOpEq && e.Op != expr.CmpOpNeq {
				m.tb.Fatalf("cmp op %v not understood", e.Op)
			}
			if bytes.Equal(got[:len(e.Data)], e.Data) != (e.Op == expr.CmpOpEq) {
				return ""
			}
		case *expr.Bitwise:
			src, out := regs[e.SourceRegister], make([]byte, e.Len)
			for i := range out {
				out[i] = src[i]&e.Mask[i] ^ e.Xor[i]
			}
			regs[e.DestRegister] = out
		case *expr.Lookup:
			if m.inSet(e.SetName, regs[e.SourceRegister]) == e.Invert {
				return ""
			}
		case *expr.Ct:
			regs[e.Register] = m.ct(e.Key)
		case *expr.Fib:
			if !e.FlagDADDR || !e.ResultADDRTYPE {
				m.tb.Fatalf("fib %+v not understood", e)
			}
			t := uint32(unix.RTN_UNICAST)
			if slices.Contains(m.host.addrs, m.p.dst) {
				t = unix.RTN_LOCAL
			}
			regs[e.Register] = binaryutil.NativeEndian.PutUint32(t)
		case *expr.Byteorder:
			if e.Op != expr.ByteorderHton || e.Size != 4 || e.Len != 4 {
				m.tb.Fatalf("byteorder %+v not understood", e)
			}
			regs[e.DestRegister] = binaryutil.BigEndian.PutUint32(binaryutil.NativeEndian.Uint32(regs[e.SourceRegister]))
		case *expr.Range:
			v := regs[e.Register][:len(e.FromData)]
			if e.Op != expr.CmpOpEq {
				m.tb.Fatalf("range op %v not understood", e.Op)
			}
			if bytes.Compare(v, e.FromData) < 0 || bytes.Compare(v, e.ToData) > 0 {
				return ""
			}
		case *expr.Immediate:
			regs[e.Register] = e.Data
		case *expr.NAT:
			if e.Type != expr.NATTypeDestNAT {
				m.tb.Fatalf("nat %+v not understood", e)
			}
			a, _ := netip.AddrFromSlice(regs[e.RegAddrMin][:4])
			return fmt.Sprintf("dnat %s:%d", a, binaryutil.BigEndian.Uint16(regs[e.RegProtoMin]))
		case *expr.Masq:
			return "masquerade"
		case *expr.Reject:
			switch {
			case e.Type == unix.NFT_REJECT_TCP_RST:
				return "reset"
			case e.Type == unix.NFT_REJECT_ICMP_UNREACH && e.Code == 13:
				return "prohibited"
			}
			m.tb.Fatalf("reject %+v not understood", e)
		case *expr.Verdict:
			switch e.Kind {
			case expr.VerdictAccept:
				return "accept"
			case expr.VerdictDrop:
				return "drop"
			case expr.VerdictReturn:
				return "return"
			case expr.VerdictJump:
				return "jump " + e.Chain
			case expr.VerdictGoto:
				return "goto " + e.Chain
			}
			m.tb.Fatalf("verdict %+v not understood", e)
		default:
			m.tb.Fatalf("expression %T not understood", e)
		}
	}
	return ""
}

// meta loads a meta key; false is the kernel's break (no output
// interface yet, no socket).
func (m *machine) meta(key expr.MetaKey) ([]byte, bool) {
	switch key {
	case expr.MetaKeyIIFNAME:
		return ifnameKey(m.p.iif), m.p.iif != ""
	case expr.MetaKeyOIFNAME:
		return ifnameKey(m.p.oif), m.p.oif != ""
	case expr.MetaKeyL4PROTO:
		return []byte{m.p.proto}, true
	case expr.MetaKeyPROTOCOL:
		return binaryutil.BigEndian.PutUint16(m.p.etherType()), true
	case expr.MetaKeySKUID:
		return binaryutil.NativeEndian.PutUint32(m.p.uid), m.p.sock
	}
	m.tb.Fatalf("meta key %v not understood", key)
	return nil, false
}

func (m *machine) ct(key expr.CtKey) []byte {
	switch key {
	case expr.CtKeySTATE:
		s := uint32(expr.CtStateBitNEW)
		if m.p.established {
			s = expr.CtStateBitESTABLISHED
		}
		return binaryutil.NativeEndian.PutUint32(s)
	case expr.CtKeySTATUS:
		var s uint32
		if m.p.dnat {
			s = 0x20 // IPS_DST_NAT
		}
		return binaryutil.NativeEndian.PutUint32(s)
	}
	m.tb.Fatalf("ct key %v not understood", key)
	return nil
}

// inSet says whether the set named name holds the key in reg.
func (m *machine) inSet(name string, reg []byte) bool {
	i := slices.IndexFunc(m.t.Sets, func(s Set) bool { return s.Name == name })
	if i < 0 {
		m.tb.Fatalf("a rule looks up set %s, which table %s lacks", name, m.t.Table.Name)
	}
	s := m.t.Sets[i]
	key := reg[:s.KeyType.Bytes]
	return slices.ContainsFunc(s.Elems, func(e nftables.SetElement) bool { return bytes.Equal(e.Key, key) })
}
