package config

import (
	"testing"

	"github.com/rebalancerd/rebalancerd/internal/strictyaml/yamltest"
)

func TestPatchCases(t *testing.T) {
	for _, tc := range []struct {
		data string
		want []string
	}{
		{"policies: []\n", []string{"x.yml:1: policies: name at least one policy"}},
		{"policies:\n  - {policy: a, holdings: b}\nstate_dir: ${}\n", []string{`x.yml:3: state_dir: "${}": write an environment variable as ${NAME} or $NAME, and no other '$'`}},
		{"policies:\n  - policy: /a/${oops/x\n    holdings: b\n", []string{`x.yml:2: policies[0].policy: "/a/${oops/x": write an environment variable`}},
		{"policies:\n  - {policy: a, holdings: b}\nnats:\n  stream:\n    max_age: 30d\n", []string{`x.yml:5: nats.stream.max_age: want a positive duration like 5m or 1h, got "30d"`}},
		{"policies:\n  - {policy: a, holdings: b}\nnats:\n  stream:\n    replicas: 3\n", []string{"x.yml:5: nats.stream.replicas: the embedded server is a single node"}},
		{"policies:\n  - {policy: a, holdings: b}\nnats:\n  url: nats://x:4222\n  password_file: pw\n", []string{"x.yml:5: nats.password_file: needs user"}},
		{"policies:\n  - {dir: /p/, holdings_dir: h}\n  - {dir: /p, holdings_dir: h2}\n  - {policy: /x//a.yaml, holdings: b}\n  - {policy: /x/a.yaml, holdings: c}\n", []string{
			"x.yml:3: policies[1].dir: /p is already listed at line 2",
			"x.yml:5: policies[3].policy: /x/a.yaml is already listed at line 4"}},
		{"policies: [{policy: a, holdings: b}]\nnats: {user: u, password_file: p, token_file: t, creds_file: c, nkey_seed_file: n, tls: {ca_file: $X, cert_file: $Y, key_file: $Z}}\n", []string{
			"x.yml:2: nats.tls.ca_file: environment variable X is not set",
			"x.yml:2: nats.tls.cert_file: environment variable Y is not set",
			"x.yml:2: nats.tls.key_file: environment variable Z is not set",
			"x.yml:2: nats.user: applies to an external NATS",
			"x.yml:2: nats.password_file: applies to an external NATS",
			"x.yml:2: nats.token_file: applies to an external NATS",
			"x.yml:2: nats.nkey_seed_file: applies to an external NATS",
			"x.yml:2: nats.creds_file: applies to an external NATS",
			"x.yml:2: nats.tls: applies to an external NATS",
		}},
	} {
		for range 20 { // map order would show within a few runs
			_, err := Parse("x.yml", []byte(tc.data), nil)
			yamltest.Match(t, yamltest.Problems(t, err, "x.yml"), tc.want)
		}
	}
}
