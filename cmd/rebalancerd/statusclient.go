package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/statusdoc"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// statusClient reads a running daemon's /status over HTTP: the status
// command and the paper executor's latest prices use it.
type statusClient struct {
	url   string // base URL, "http://127.0.0.1:8080"
	token string
	hc    *http.Client
}

// newStatusClient finds the daemon's HTTP address and token: url when
// given, else the configuration's http.listen (and token_file, and its TLS
// certificate as the CA to trust), else the default address.
func newStatusClient(configFile, url string) (*statusClient, error) {
	c := &statusClient{url: strings.TrimSuffix(url, "/"), hc: &http.Client{Timeout: 10 * time.Second}}
	if configFile == "" {
		if c.url == "" {
			c.url = "http://127.0.0.1:8080"
		}
		return c, nil
	}
	cfg, err := readConfig(configFile)
	if err != nil {
		return nil, err
	}
	h := cfg.HTTP
	if h.TokenFile != "" {
		tok, err := inputfile.Read(h.TokenFile, inputfile.MaxSecretSize)
		if err != nil {
			return nil, fmt.Errorf("http token: %w", err)
		}
		c.token = string(trimSpace(tok))
	}
	scheme := "http"
	if h.CertFile != "" {
		scheme = "https"
		pem, err := inputfile.Read(h.CertFile, strictyaml.MaxFileSize)
		if err != nil {
			return nil, fmt.Errorf("http certificate: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pool.AppendCertsFromPEM(pem)
		c.hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	if c.url == "" {
		host, port, err := net.SplitHostPort(h.Listen)
		if err != nil {
			return nil, fmt.Errorf("http.listen %q: %w", h.Listen, err)
		}
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		c.url = scheme + "://" + net.JoinHostPort(host, port)
	}
	return c, nil
}

// get fetches and decodes /status.
func (c *statusClient) get(ctx context.Context) (*statusdoc.Document, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/status", nil)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w (is rebalancerd running?)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s/status: %w", c.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/status: %s: %s", c.url, resp.Status, strings.TrimSpace(string(body)))
	}
	var doc statusdoc.Document
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("GET %s/status: %w", c.url, err)
	}
	return &doc, nil
}
