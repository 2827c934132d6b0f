package secretproxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"
)

const (
	caLifetime   = 365 * 24 * time.Hour
	leafLifetime = 30 * 24 * time.Hour
	// backdate covers a guest clock somewhat behind the host's (a VM
	// resumed from a template starts with the template's time).
	backdate = time.Hour
	// maxLeaves bounds the leaf cache: a guest that CONNECTs to many
	// bound subdomains cannot make the proxy hold a certificate for each.
	maxLeaves = 256
	// leafMargin is how long before its end a cached leaf is replaced.
	leafMargin = 24 * time.Hour
)

// authority is a VM's CA and the leaves it has signed. Its key lives only
// in this process's memory: a CA that signs for any name must not outlive
// the VM it was made for, nor be readable from disk.
type authority struct {
	cert    *x509.Certificate
	certPEM []byte

	mu     sync.Mutex
	key    *ecdsa.PrivateKey // nil once forgotten
	leaves map[string]*tls.Certificate
	order  []string // leaves' hosts, oldest first, for eviction
}

func newAuthority(vm string, now time.Time) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate the CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "banger VM " + vm + " secrets CA", Organization: []string{"banger"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse the CA certificate: %w", err)
	}
	return &authority{
		cert:    cert,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:     key,
		leaves:  make(map[string]*tls.Certificate),
	}, nil
}

// leaf returns a certificate for host signed by the CA, from the cache
// while it has more than leafMargin left.
func (a *authority) leaf(host string, now time.Time) (*tls.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.key == nil {
		return nil, errors.New("the proxy is closed")
	}
	if c, ok := a.leaves[host]; ok && now.Add(leafMargin).Before(c.Leaf.NotAfter) {
		return c, nil
	}
	c, err := a.sign(host, now)
	if err != nil {
		return nil, err
	}
	if _, ok := a.leaves[host]; !ok {
		if len(a.order) >= maxLeaves {
			delete(a.leaves, a.order[0])
			a.order = a.order[1:]
		}
		a.order = append(a.order, host)
	}
	a.leaves[host] = c
	return c, nil
}

func (a *authority) sign(host string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate a key for %s: %w", host, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(leafLifetime)
	if notAfter.After(a.cert.NotAfter) {
		// A leaf valid past its CA would not verify anyway.
		notAfter = a.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return nil, fmt.Errorf("sign a certificate for %s: %w", host, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse the certificate for %s: %w", host, err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, nil
}

// forget drops the CA key and the leaves: nothing can be signed after.
func (a *authority) forget() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.key = nil
	a.leaves = nil
	a.order = nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("random serial number: %w", err)
	}
	return serial, nil
}
