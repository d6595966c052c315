package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/events"
)

// TestKillSwitch: a halt with the right token stops all publishing (a
// breach plans nothing), survives a restart, and a release lets the
// rebalance out. Requests with a wrong token are refused. The halt and
// release go through the real CLI commands.
func TestKillSwitch(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "control.token")
	if err := os.WriteFile(tokenFile, []byte("let-me-halt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cliConfig := filepath.Join(dir, "cli.yaml")
	writeFile(t, cliConfig, "policies:\n  - {policy: p.yaml, holdings: h.yaml}\ncontrol: {token_file: control.token}\n")
	pol := policyText("threshold", "")
	withToken := func(c *config.Config, _ *Main) { c.ControlTokenFile = tokenFile }
	d := startDaemon(t, pol, monday0959, withToken)
	w := d.watchOrders()

	cli := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		args = append(args, "-config", cliConfig, "-server", d.url())
		code := Run(context.Background(), args, &out, &errb)
		return code, out.String() + errb.String()
	}
	// A forged request without the token is refused.
	data, _ := json.Marshal(events.ControlRequest{SchemaVersion: 1, Reason: "forged", Token: "guess"})
	msg, err := d.client().Request("rebalance.control.halt", data, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(msg.Data), `"ok":false`) || !strings.Contains(string(msg.Data), "wrong or missing token") {
		t.Fatalf("forged halt answered %s", msg.Data)
	}
	if code, out := cli("halt", "-reason", "broker incident", "-by", "ops"); code != 0 || !strings.Contains(out, "halted: broker incident") {
		t.Fatalf("halt: exit %d: %s", code, out)
	}
	d.prices("VTI", "130", "BND", "100")
	d.waitBlocked("halted")
	d.Engine.EvaluateAll()
	if n := len(w.snapshot()); n != 0 {
		t.Fatalf("%d orders published while halted", n)
	}
	if code, body := d.httpGet("/readyz"); code != 503 || !strings.Contains(body, "kill switch engaged: broker incident") {
		t.Errorf("/readyz %d %q", code, body)
	}

	// A restart keeps the halt.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	d2 := startDaemon(t, pol, monday0959.Add(2*time.Minute), func(c *config.Config, m *Main) {
		withToken(c, m)
		c.StateDir = d.Config.StateDir
		c.Policies = d.Config.Policies
	})
	if h := d2.Engine.Halted(); h == nil || h.Reason != "broker incident" || h.By != "ops" {
		t.Fatalf("after a restart the halt is %+v", h)
	}
	w2 := d2.watchOrders()
	d2.prices("VTI", "130", "BND", "100")
	d2.waitBlocked("halted")
	d = d2
	if code, out := cli("release"); code != 0 || !strings.Contains(out, "rebalancerd is publishing") {
		t.Fatalf("release: exit %d: %s", code, out)
	}
	w2.waitOrders(t, 2)
	if _, err := os.Stat(filepath.Join(d2.Config.StateDir, "halt.json")); !os.IsNotExist(err) {
		t.Errorf("halt file still there after the release: %v", err)
	}
}

// TestManualRebalance: `rebalancerd rebalance -policy` rebalances a policy
// inside its bands now, with the trigger "manual".
func TestManualRebalance(t *testing.T) {
	pol := policyText("threshold", "")
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()
	d.prices("VTI", "105", "BND", "100") // inside the bands: no threshold rebalance
	d.Engine.EvaluateAll()
	var out, errb bytes.Buffer
	code := Run(context.Background(), []string{"rebalance", "-policy", "test-household", "-server", d.url()}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errb.String())
	}
	want := expectedPlan(t, pol, monday0959, "VTI", "105", "BND", "100")
	sameOrders(t, w.waitOrders(t, len(want.Orders)), want, "manual")
	code = Run(context.Background(), []string{"rebalance", "-policy", "nope", "-server", d.url()}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), `refused: no policy "nope"`) {
		t.Errorf("unknown policy: exit %d, %s", code, errb.String())
	}
}

// TestCheckConfigFindsRunFailures: `check -config` reports what `run`
// would fail on beyond syntax: a missing feed file, an unset API key
// variable, a secret file readable by others.
func TestCheckConfigFindsRunFailures(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), policyText("threshold", ""))
	writeFile(t, filepath.Join(dir, "h.yaml"), testHoldings)
	writeFile(t, filepath.Join(dir, "token"), "t\n") // 0644
	writeFile(t, filepath.Join(dir, "c.yaml"), `policies:
  - {policy: p.yaml, holdings: h.yaml}
feeds:
  - {name: gone, kind: file, path: prices.txt}
  - {name: api, kind: http, url: "https://example.test/q", header: X-Key, api_key_env: REBALANCERD_TEST_UNSET_KEY, fields: {VTI: q.VTI}}
control: {token_file: token}
`)
	code, out, errOut := run(t, "check", "-config", filepath.Join(dir, "c.yaml"))
	if code != exitInvalid {
		t.Fatalf("exit %d, want %d: %s%s", code, exitInvalid, out, errOut)
	}
	for _, want := range []string{
		"c.yaml:4: feeds: gone: ",
		"c.yaml:5: feeds: api: api key: environment variable REBALANCERD_TEST_UNSET_KEY is not set",
		"control token file " + filepath.Join(dir, "token") + " is accessible by group or others",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("output lacks %q:\n%s", want, errOut)
		}
	}
}

// TestCheckConfigRefusesHostileFiles: `check -config` refuses policy and
// holdings paths that are not regular files or are too large, at once and
// without reading them: a symlink to /dev/zero, a 1 GiB sparse file, a
// FIFO (which would block an open for reading until a writer came).
func TestCheckConfigRefusesHostileFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), policyText("threshold", ""))
	writeFile(t, filepath.Join(dir, "h.yaml"), testHoldings)
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.yaml"), 0o600); err != nil {
		t.Fatal(err)
	}
	sparse, err := os.Create(filepath.Join(dir, "sparse.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sparse.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	sparse.Close()
	writeFile(t, filepath.Join(dir, "c.yaml"), `policies:
  - {policy: zero.yaml, holdings: h.yaml}
  - {policy: p.yaml, holdings: fifo.yaml}
  - {policy: sparse.yaml, holdings: h.yaml}
`)
	type result struct {
		code   int
		errOut string
	}
	done := make(chan result, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), []string{"check", "-config", filepath.Join(dir, "c.yaml")}, &stdout, &stderr)
		done <- result{code, stderr.String()}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("check -config did not return within 10s")
	}
	if r.code != exitInvalid {
		t.Fatalf("exit %d, want %d: %s", r.code, exitInvalid, r.errOut)
	}
	for _, want := range []string{
		"zero.yaml: read " + filepath.Join(dir, "zero.yaml") + ": not a regular file (a character device)",
		"fifo.yaml: holdings of policy test-household: read " + filepath.Join(dir, "fifo.yaml") + ": not a regular file (a FIFO)",
		"sparse.yaml: read " + filepath.Join(dir, "sparse.yaml") + ": file is larger than the limit of 1048576 bytes",
	} {
		if !strings.Contains(r.errOut, want) {
			t.Errorf("output lacks %q:\n%s", want, r.errOut)
		}
	}
}

// TestManualRebalanceWhileHalted: `rebalancerd rebalance` under the kill
// switch says it was skipped and why, and exits non-zero (it printed
// "done" and exited 0 while the log said "rebalance skipped").
func TestManualRebalanceWhileHalted(t *testing.T) {
	pol := policyText("threshold", "")
	d := startDaemon(t, pol, monday0959, nil)
	w := d.watchOrders()
	d.prices("VTI", "105", "BND", "100")
	d.Engine.EvaluateAll()
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"halt", "-reason", "test", "-server", d.url()}, &out, &errb); code != 0 {
		t.Fatalf("halt: exit %d: %s", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	code := Run(context.Background(), []string{"rebalance", "-policy", "test-household", "-server", d.url()}, &out, &errb)
	if code != exitInvalid || strings.Contains(out.String(), "done") ||
		!strings.Contains(errb.String(), "rebalance: rebalance skipped: blocked: halted: kill switch engaged") {
		t.Errorf("rebalance while halted: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
	if n := len(w.snapshot()); n != 0 {
		t.Errorf("%d orders published under the kill switch", n)
	}
}

// TestCheckConfigRefusesExposedHTTP: `check -config` refuses an
// off-loopback http.listen without a token, as `run` does (check accepted
// it and run then refused to start).
func TestCheckConfigRefusesExposedHTTP(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), policyText("threshold", ""))
	writeFile(t, filepath.Join(dir, "h.yaml"), testHoldings)
	writeFile(t, filepath.Join(dir, "c.yaml"), "policies:\n  - {policy: p.yaml, holdings: h.yaml}\nhttp: {listen: \"0.0.0.0:9464\"}\n")
	code, out, errOut := run(t, "check", "-config", filepath.Join(dir, "c.yaml"))
	want := "http: http server: 0.0.0.0:9464 is not a loopback address: set a bearer token (http.token_file) to listen there"
	if code != exitInvalid || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d, want %d and %q: %s%s", code, exitInvalid, want, out, errOut)
	}
	// What run refuses at start, with the same message.
	cfg, err := readConfig(filepath.Join(dir, "c.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := &Main{Config: cfg, EmbeddedPort: -1}
	cfg.StateDir = filepath.Join(dir, "state")
	if err := m.Open(context.Background()); err == nil || !strings.Contains(err.Error(), want) {
		m.Close()
		t.Fatalf("run: Open = %v, want %q", err, want)
	}
}

// TestControlFloodSampled: 20,000 control requests with a wrong token are
// all refused and counted in rebalancerd_inputs_rejected_total, but the
// log (the daemon's own logger, as `run` builds it) samples the repeated
// warning instead of writing 20,000 lines; info lines are not sampled.
func TestControlFloodSampled(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "control.token")
	if err := os.WriteFile(tokenFile, []byte("let-me-halt\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	d := startDaemon(t, policyText("threshold", ""), monday0959, func(c *config.Config, m *Main) {
		c.ControlTokenFile = tokenFile
		log, _, err := newLogger(config.Log{Level: "info", Format: "json"}, &logs)
		if err != nil {
			t.Fatal(err)
		}
		m.Log = log
	})
	const n = 20_000
	data, _ := json.Marshal(events.ControlRequest{SchemaVersion: 1, Reason: "forged", Token: "guess"})
	nc := d.client()
	for range n {
		if err := nc.Publish("rebalance.control.halt", data); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`rebalancerd_inputs_rejected_total{input="control",reason="wrong_token"} %d`, n)
	checkFor(t, 60*time.Second, 50*time.Millisecond, func() error {
		if _, body := d.httpGet("/metrics"); !strings.Contains(body, want) {
			return fmt.Errorf("/metrics lacks %s", want)
		}
		return nil
	})
	refused := strings.Count(logs.String(), `"msg":"control request refused"`)
	if refused == 0 || refused > n/10 {
		t.Errorf("%d warnings for %d refused control requests, want some and at most %d", refused, n, n/10)
	}
	for i := range 300 { // info lines are all written
		d.Log.Info("info line", zap.Int("i", i))
	}
	if got := strings.Count(logs.String(), `"msg":"info line"`); got != 300 {
		t.Errorf("%d of 300 info lines written", got)
	}
}

// shadowLike is a file in the format of /etc/shadow: lines of
// colon-separated fields with password hashes, which a YAML parser reads
// as a mapping of long keys.
const shadowLike = "root:$6$Zx9salt0salt1$S3CRETHASHpart1S3CRETHASHpart2S3CRETHASHpart3S3CRETHASHpart4:19000:0:99999:7:::\n" +
	"daemon:*:19000:0:99999:7:::\n" +
	"svc: $6$Q7salt$S3CRETHASHpart5S3CRETHASHpart6S3CRETHASHpart7S3CRETHASHpart8\n"

// TestFileContentsDoNotLeak: a policy path that resolves to a shadow-like
// file is refused on reload without any of its content in the log,
// /status or /readyz (its first line was echoed in all three), and
// `check` quotes none of it either.
func TestFileContentsDoNotLeak(t *testing.T) {
	var logs syncBuffer
	d := startDaemon(t, policyText("threshold", ""), monday0959, func(_ *config.Config, m *Main) {
		log, _, err := newLogger(config.Log{Level: "info", Format: "json"}, &logs)
		if err != nil {
			t.Fatal(err)
		}
		m.Log = log
	})
	shadow := filepath.Join(d.dir, "shadow")
	writeFile(t, shadow, shadowLike)
	if err := os.Remove(d.policy); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(shadow, d.policy); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(reasonSIGHUP); err == nil {
		t.Fatal("reload of a shadow-like policy succeeded")
	}
	_, status := d.httpGet("/status")
	_, ready := d.httpGet("/readyz")
	code, out, errOut := run(t, "check", "-policy", d.policy)
	for what, text := range map[string]string{"log": logs.String(), "/status": status, "/readyz": ready, "check": out + errOut} {
		for _, secret := range []string{"S3CRET", "Zx9salt", "Q7salt", "$6$"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s shows %q from the file:\n%s", what, secret, text)
			}
		}
	}
	if !strings.Contains(ready, "not a file of this kind") || code != exitInvalid {
		t.Errorf("/readyz %q, check exit %d: want the reload error and exit %d", ready, code, exitInvalid)
	}
}
