package config

import (
	"strings"
	"testing"
	"time"
)

func TestEmbeddedSyncInterval(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  time.Duration
		err   string
	}{
		{"always", 0, ""},
		{"2m", 2 * time.Minute, ""},
		{"never", 0, `c.yml:5: nats.embedded.sync_interval: want a positive duration like 5m or 1h, got "never"`},
	} {
		data := "policies:\n  - {policy: p.yaml, holdings: h.yaml}\nnats:\n  embedded:\n    sync_interval: " + tt.value + "\n"
		c, err := Parse("c.yml", []byte(data), nil)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.value, err, tt.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tt.value, err)
		case c.NATS.EmbeddedSync != tt.want:
			t.Errorf("%s: sync %v, want %v", tt.value, c.NATS.EmbeddedSync, tt.want)
		}
	}
}

func TestHTTPExposureFields(t *testing.T) {
	data := "policies:\n  - {policy: p.yaml, holdings: h.yaml}\nhttp:\n  listen: 0.0.0.0:8443\n  token_file: token\n  tls: {cert_file: c.pem, key_file: k.pem}\n  allow_plaintext: false\n"
	c, err := Parse("/etc/r/c.yml", []byte(data), nil)
	if err != nil {
		t.Fatal(err)
	}
	h := c.HTTP
	if h.Listen != "0.0.0.0:8443" || h.TokenFile != "/etc/r/token" || h.CertFile != "/etc/r/c.pem" || h.KeyFile != "/etc/r/k.pem" || h.AllowPlaintext {
		t.Errorf("HTTP = %+v", h)
	}
	bad := "policies:\n  - {policy: p.yaml, holdings: h.yaml}\nhttp:\n  tls: {cert_file: c.pem}\n  allow_plaintext: yes\n"
	_, err = Parse("c.yml", []byte(bad), nil)
	for _, want := range []string{"c.yml:4: http.tls: cert_file and key_file go together", `c.yml:5: http.allow_plaintext: want true or false, got "yes"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}
	}
}
