package nats

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"
)

// runServer starts a plain server (no JetStream) with opts on a random
// port, or on opts.Port if set.
func runServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host = "127.0.0.1"
	if opts.Port == 0 {
		opts.Port = -1
	}
	opts.NoLog, opts.NoSigs = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func port(s *server.Server) int { return s.Addr().(*net.TCPAddr).Port }

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// stateRecorder records onState calls.
type stateRecorder struct {
	mu     sync.Mutex
	states []bool
}

func (r *stateRecorder) set(c bool) {
	r.mu.Lock()
	r.states = append(r.states, c)
	r.mu.Unlock()
}

func (r *stateRecorder) get() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.states...)
}

// waitStates waits until the recorded states are want.
func (r *stateRecorder) waitStates(t *testing.T, want ...bool) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		if got := r.get(); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("states %v; want %v", got, want)
		}
		return nil
	})
}

// connectRecorded connects with cfg, recording the states, and closes the
// connection at the end of the test.
func connectRecorded(t *testing.T, cfg ConnConfig, log *zap.Logger) (*natsgo.Conn, *stateRecorder) {
	t.Helper()
	rec := &stateRecorder{}
	cfg.ReconnectWait = 20 * time.Millisecond
	nc, err := Connect(cfg, log, rec.set)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc, rec
}

// connectOK connects with cfg and checks that a request round trip works.
func connectOK(t *testing.T, cfg ConnConfig) {
	t.Helper()
	log, logs := testLogger(t)
	nc, rec := connectRecorded(t, cfg, log)
	rec.waitStates(t, true)
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	for _, e := range logs.All() {
		for _, secret := range []string{"s3cret", "t0ken"} {
			if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), secret) {
				t.Errorf("log leaks a secret: %s %v", e.Message, e.ContextMap())
			}
		}
	}
}

// connectRefused connects with cfg and waits for the server to refuse it.
func connectRefused(t *testing.T, cfg ConnConfig, why string) {
	t.Helper()
	nc, rec := connectRecorded(t, cfg, nil)
	checkFor(t, 10*time.Second, func() error {
		if err := nc.LastError(); err == nil || !strings.Contains(strings.ToLower(err.Error()), why) {
			return fmt.Errorf("last error %v; want one about %q", err, why)
		}
		return nil
	})
	if nc.IsConnected() || len(rec.get()) != 0 {
		t.Errorf("connected %v, states %v; want refused", nc.IsConnected(), rec.get())
	}
}

func TestConnectUserPassword(t *testing.T) {
	s := runServer(t, &server.Options{Username: "rb", Password: "s3cret"})
	url := fmt.Sprintf("nats://127.0.0.1:%d", port(s))
	connectOK(t, ConnConfig{URL: url, User: "rb", PasswordFile: writeFile(t, "password", "s3cret\n")})
	connectOK(t, ConnConfig{URL: url, User: "rb", Password: "s3cret"})
	connectRefused(t, ConnConfig{URL: url, User: "rb", PasswordFile: writeFile(t, "password", "wrong\n")}, "authorization")
}

func TestConnectToken(t *testing.T) {
	s := runServer(t, &server.Options{Authorization: "t0ken"})
	url := fmt.Sprintf("nats://127.0.0.1:%d", port(s))
	connectOK(t, ConnConfig{URL: url, TokenFile: writeFile(t, "token", "t0ken\n")})
	connectRefused(t, ConnConfig{URL: url, TokenFile: writeFile(t, "token", "other")}, "authorization")
}

func TestConnectNKey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	s := runServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	url := fmt.Sprintf("nats://127.0.0.1:%d", port(s))
	connectOK(t, ConnConfig{URL: url, NKeySeedFile: writeFile(t, "user.nk", string(seed)+"\n")})

	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	connectRefused(t, ConnConfig{URL: url, NKeySeedFile: writeFile(t, "other.nk", string(otherSeed))}, "authorization")
}

func TestConnectCreds(t *testing.T) {
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ajwt, err := jwt.NewAccountClaims(apub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	s := runServer(t, &server.Options{TrustedKeys: []string{opub}, AccountResolver: resolver})
	url := fmt.Sprintf("nats://127.0.0.1:%d", port(s))
	connectOK(t, ConnConfig{URL: url, CredsFile: writeFile(t, "user.creds", string(creds))})

	// A user signed by an account the server does not know.
	bkp, _ := nkeys.CreateAccount()
	bjwt, _ := jwt.NewUserClaims(upub).Encode(bkp)
	bcreds, _ := jwt.FormatUserConfig(bjwt, useed)
	connectRefused(t, ConnConfig{URL: url, CredsFile: writeFile(t, "other.creds", string(bcreds))}, "authorization")
}

// pki is a test CA with a server and a client certificate, as PEM files.
type pki struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rebalancerd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return write(cn+".pem", "CERTIFICATE", der), write(cn+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	p := pki{caFile: write("ca.pem", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = issue(2, "server", x509.ExtKeyUsageServerAuth, []net.IP{net.IPv4(127, 0, 0, 1)})
	p.clientCert, p.clientKey = issue(3, "client", x509.ExtKeyUsageClientAuth, nil)
	return p
}

func TestConnectTLSClientCertificate(t *testing.T) {
	p := newPKI(t)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p.serverCert, KeyFile: p.serverKey, CaFile: p.caFile, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	s := runServer(t, &server.Options{TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 2})
	url := fmt.Sprintf("tls://127.0.0.1:%d", port(s))
	connectOK(t, ConnConfig{URL: url, CAFile: p.caFile, CertFile: p.clientCert, KeyFile: p.clientKey})
	// Without a client certificate the server refuses the handshake.
	connectRefused(t, ConnConfig{URL: url, CAFile: p.caFile}, "tls")
	// Without the CA the client does not trust the server.
	connectRefused(t, ConnConfig{URL: url, CertFile: p.clientCert, KeyFile: p.clientKey}, "certificate")
}

func TestConnectConfigErrors(t *testing.T) {
	secret := writeFile(t, "secret", "s3cret")
	empty := writeFile(t, "empty", "\n")
	absent := filepath.Join(t.TempDir(), "absent")
	for name, cfg := range map[string]ConnConfig{
		"no URL":                  {},
		"password without user":   {PasswordFile: secret},
		"password and file":       {User: "u", Password: "s3cret", PasswordFile: secret},
		"missing password file":   {User: "u", PasswordFile: absent},
		"empty token file":        {TokenFile: empty},
		"two methods":             {User: "u", PasswordFile: secret, TokenFile: secret},
		"bad seed":                {NKeySeedFile: secret},
		"missing creds":           {CredsFile: absent},
		"certificate without key": {CertFile: secret},
		"missing CA":              {CAFile: absent},
	} {
		if cfg.URL == "" && name != "no URL" {
			cfg.URL = "nats://127.0.0.1:1"
		}
		nc, err := Connect(cfg, nil, nil)
		if err == nil {
			nc.Close()
			t.Errorf("%s: no error", name)
			continue
		}
		t.Logf("%s: %v", name, err)
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: error leaks the secret: %v", name, err)
		}
	}
}

// TestConnectRetriesUntilServerUp connects while no server runs: Connect
// succeeds, and the connection comes up with the server, then follows its
// restarts.
func TestConnectRetriesUntilServerUp(t *testing.T) {
	// Find a free port, then leave it closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := l.Addr().(*net.TCPAddr).Port
	l.Close()

	var rec stateRecorder
	nc, err := Connect(ConnConfig{URL: fmt.Sprintf("nats://127.0.0.1:%d", p), ReconnectWait: 20 * time.Millisecond}, nil, rec.set)
	if err != nil {
		t.Fatalf("Connect with the server down: %v", err)
	}
	defer nc.Close()
	if nc.IsConnected() || len(rec.get()) != 0 {
		t.Fatalf("connected %v, states %v before the server runs", nc.IsConnected(), rec.get())
	}

	s := runServer(t, &server.Options{Port: p})
	rec.waitStates(t, true)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	s.Shutdown()
	s.WaitForShutdown()
	rec.waitStates(t, true, false)
	runServer(t, &server.Options{Port: p})
	rec.waitStates(t, true, false, true)
	nc.Close()
	rec.waitStates(t, true, false, true, false)
}

func TestConnectEmbedded(t *testing.T) {
	ts := newTestServer(t)
	var rec stateRecorder
	nc, err := ConnectEmbedded(ts.server(), nil, rec.set)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rec.waitStates(t, true)
	b := newBus(t, nc, fastConfig())
	if _, err := b.PublishOrders(t.Context(), householdOrders("inproc", 5)); err != nil {
		t.Fatal(err)
	}
	if _, err := ConnectEmbedded(nil, nil, nil); err == nil {
		t.Error("ConnectEmbedded(nil): no error")
	}
}

func TestRedactURL(t *testing.T) {
	got := redactURL("nats://rb:s3cret@a:4222, tls://t0ken@b:4222,nats://c:4222")
	if strings.Contains(got, "s3cret") || strings.Contains(got, "t0ken") || !strings.Contains(got, "nats://c:4222") {
		t.Errorf("redactURL = %q", got)
	}
}
