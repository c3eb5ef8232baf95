package tlsutil

import (
	"crypto/ecdsa"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestSelfSignedAndPolicy(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	created, err := EnsureSelfSigned(cf, kf, []string{"mail.example.test", "127.0.0.1"}, time.Now())
	if err != nil || !created {
		t.Fatal(created, err)
	}
	if fi, _ := os.Stat(kf); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", fi.Mode())
	}
	if again, _ := EnsureSelfSigned(cf, kf, []string{"x"}, time.Now()); again {
		t.Fatal("regenerated an existing certificate")
	}
	c, err := Load(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Certificate().PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Fatal("not ECDSA")
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"tls1.3", &tls.Config{InsecureSkipVerify: true}, true},
		{"tls1.2 ecdhe aead", &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}, true},
		{"tls1.1", &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
		{"tls1.2 cbc only", &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, false},
	} {
		conn, err := tls.Dial("tcp", ln.Addr().String(), tc.cfg)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
		if err == nil {
			st := conn.ConnectionState()
			if st.Version < tls.VersionTLS12 {
				t.Errorf("%s: version %x", tc.name, st.Version)
			}
			conn.Close()
		}
	}
}
