// Command secretsd plays the internet for bench/secrets.sh: an HTTPS
// server for one name (/small, 3 bytes; /big, 64 MiB), with a certificate
// from a CA it makes and writes out, and a DNS server that answers that
// name with the server's address.
//
// Usage: secretsd -addr 198.18.0.2 -name api.bench -ca FILE
package main

import (
	"crypto/rand"
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/banger-dev/banger/internal/kit/testkit"

	"github.com/miekg/dns"
)

func main() {
	addr := flag.String("addr", "198.18.0.2", "the address to serve HTTPS (443) and DNS (53) on")
	name := flag.String("name", "api.bench", "the server's name")
	caFile := flag.String("ca", "", "where to write the CA certificate (PEM)")
	flag.Parse()
	cert, caPEM, err := certFor(*name)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(*caFile, caPEM, 0o644); err != nil {
		log.Fatal(err)
	}
	bigBody := make([]byte, 64<<20)
	rand.Read(bigBody)
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(bigBody)))
		w.Write(bigBody)
	})
	ln, err := net.Listen("tcp4", net.JoinHostPort(*addr, "443"))
	if err != nil {
		log.Fatal(err)
	}
	fqdn := dns.Fqdn(*name)
	go func() {
		h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(r)
			q := r.Question[0]
			if strings.EqualFold(q.Name, fqdn) && q.Qtype == dns.TypeA {
				rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN A %s", q.Name, *addr))
				m.Answer = append(m.Answer, rr)
			} else if !strings.EqualFold(q.Name, fqdn) {
				m.SetRcode(r, dns.RcodeNameError)
			}
			w.WriteMsg(m)
		})
		log.Fatal((&dns.Server{Addr: net.JoinHostPort(*addr, "53"), Net: "udp", Handler: h}).ListenAndServe())
	}()
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	log.Fatal(srv.ServeTLS(ln, "", ""))
}

// certFor makes a CA and a certificate for name signed by it.
func certFor(name string) (tls.Certificate, []byte, error) {
	ca, err := testkit.NewCA("secretsd CA")
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := ca.Leaf(name)
	return leaf, ca.PEM, err
}
