package nftrules

import (
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The matches and statements banger's rules are made of, each as the
// expressions nft would compile it to; every match loads into register 1.

func payload(base expr.PayloadBase, off, n uint32) []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n}}
}

func cmp(op expr.CmpOp, data []byte) []expr.Any {
	return []expr.Any{&expr.Cmp{Op: op, Register: 1, Data: data}}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

// jump and goTo pass to chain ch; from a jump, a return comes back.
func jump(ch *nftables.Chain) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: ch.Name}}
}

func goTo(ch *nftables.Chain) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: ch.Name}}
}

func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }

func meta(key expr.MetaKey) []expr.Any { return []expr.Any{&expr.Meta{Key: key, Register: 1}} }

// ifname matches the input or output interface's name (or, with
// is false, any other).
func ifname(key expr.MetaKey, name string, is bool) []expr.Any {
	op := expr.CmpOpEq
	if !is {
		op = expr.CmpOpNeq
	}
	return slices.Concat(meta(key), cmp(op, ifnameKey(name)))
}

// ifnameKey is an interface's name as the kernel compares it: padded to
// IFNAMSIZ.
func ifnameKey(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// addr matches the IPv4 source (off 12) or destination (off 16) address.
func addr(off uint32, a netip.Addr) []expr.Any {
	b := a.As4()
	return slices.Concat(payload(expr.PayloadBaseNetworkHeader, off, 4), cmp(expr.CmpOpEq, b[:]))
}

// inPrefix matches an IPv4 source (off 12) or destination (off 16) in p.
func inPrefix(off uint32, p netip.Prefix) []expr.Any {
	mask := net.CIDRMask(p.Bits(), 32)
	b := p.Masked().Addr().As4()
	return append(payload(expr.PayloadBaseNetworkHeader, off, 4),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b[:]})
}

// inSet matches what load puts in the register against set (or, with
// is false, against anything but set).
func inSet(load []expr.Any, set *nftables.Set, is bool) []expr.Any {
	return append(slices.Clone(load), &expr.Lookup{SourceRegister: 1, SetName: set.Name, Invert: !is})
}

func l4proto(p byte) []expr.Any {
	return slices.Concat(meta(expr.MetaKeyL4PROTO), cmp(expr.CmpOpEq, []byte{p}))
}

func l4(udp bool) []expr.Any {
	if udp {
		return l4proto(unix.IPPROTO_UDP)
	}
	return l4proto(unix.IPPROTO_TCP)
}

func dport(p int) []expr.Any {
	return slices.Concat(payload(expr.PayloadBaseTransportHeader, 2, 2), cmp(expr.CmpOpEq, binaryutil.BigEndian.PutUint16(uint16(p))))
}

func etherType(t uint16) []expr.Any {
	return slices.Concat(meta(expr.MetaKeyPROTOCOL), cmp(expr.CmpOpEq, binaryutil.BigEndian.PutUint16(t)))
}

// ctState matches a connection in any of the states.
func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// established matches replies, and what a connection brings along.
func established() []expr.Any { return ctState(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED) }

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

// natTo translates the destination to an address and port.
func natTo(a netip.Addr, port int) []expr.Any {
	b := a.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: b[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(uint16(port))},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

// skuid matches a socket of uid (or, with is false, of any other uid).
func skuid(uid uint32, is bool) []expr.Any {
	op := expr.CmpOpEq
	if !is {
		op = expr.CmpOpNeq
	}
	return slices.Concat(meta(expr.MetaKeySKUID), cmp(op, binaryutil.NativeEndian.PutUint32(uid)))
}

// skuidIn matches a socket of a uid in [from, to]: meta skuid is
// host-endian, compared as a big-endian range.
func skuidIn(from, to uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeySKUID, Register: 1},
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: binaryutil.BigEndian.PutUint32(from), ToData: binaryutil.BigEndian.PutUint32(to)},
	}
}
