// Command secretsd plays the internet for bench/secrets.sh: an HTTPS
// server for one name (/small, 3 bytes; /big, 64 MiB), with a certificate
// from a CA it makes and writes out, and a DNS server that answers that
// name with the server's address.
//
// Usage: secretsd -addr 198.18.0.2 -name api.bench -ca FILE
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

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
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "secretsd CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	ca, _ = x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
