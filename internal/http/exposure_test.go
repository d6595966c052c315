package http

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestExposureRules(t *testing.T) {
	for _, tt := range []struct {
		name string
		s    *Server
		want string // error substring; empty: allowed
	}{
		{"loopback without token", &Server{Addr: "127.0.0.1:0"}, ""},
		{"ipv6 loopback", &Server{Addr: "[::1]:0"}, ""},
		{"all interfaces without token", &Server{Addr: ":0"}, "not a loopback address: set a bearer token"},
		{"all interfaces, token, plain", &Server{Addr: "0.0.0.0:0", Token: "t"}, "serve TLS (http.tls) or acknowledge plain HTTP"},
		{"all interfaces, token, plain acknowledged", &Server{Addr: "0.0.0.0:0", Token: "t", AllowPlaintext: true}, ""},
		{"cert without key", &Server{Addr: "127.0.0.1:0", CertFile: "c.pem"}, "needs both cert_file and key_file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckExposure(tt.s.Addr, tt.s.Token != "", tt.s.CertFile, tt.s.KeyFile, tt.s.AllowPlaintext)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	s := &Server{Addr: "127.0.0.1:0", Token: "s3cret", Status: func() any { return map[string]int{"x": 1} }}
	if err := s.Open(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Close(ctx)
	}()
	get := func(path, auth string) int {
		req, _ := http.NewRequest("GET", s.URL()+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		path, auth string
		want       int
	}{
		{"/healthz", "", 200},
		{"/status", "", 401},
		{"/status", "Bearer wrong", 401},
		{"/status", "Bearer s3cret", 200},
		{"/readyz", "", 401},
		{"/readyz", "Bearer s3cret", 200},
		// The scheme is case-insensitive (RFC 9110); the token is not.
		{"/status", "bearer s3cret", 200},
		{"/status", "BEARER  s3cret", 200},
		{"/status", "bearer S3CRET", 401},
		{"/status", "Basic s3cret", 401},
		{"/status", "s3cret", 401},
		{"/status", "Bearer", 401},
	} {
		if got := get(tt.path, tt.auth); got != tt.want {
			t.Errorf("GET %s with %q = %d, want %d", tt.path, tt.auth, got, tt.want)
		}
	}
}
