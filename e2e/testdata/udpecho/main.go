// Command udpecho answers every UDP datagram on the given port with
// "echo: " and the datagram: the bridge test's guest-side UDP server
// (busybox has none).
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: udpecho PORT")
		os.Exit(2)
	}
	pc, err := net.ListenPacket("udp4", ":"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			os.Exit(1)
		}
		pc.WriteTo(append([]byte("echo: "), buf[:n]...), from)
	}
}
