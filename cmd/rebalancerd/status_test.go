package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/buildinfo"
	"github.com/rebalancerd/rebalancerd/internal/statusdoc"
)

func TestVersionCommand(t *testing.T) {
	want := buildinfo.Read().String() + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		code, out, _ := run(t, args...)
		if code != 0 || out != want || !strings.HasPrefix(out, "rebalancerd ") || !strings.Contains(out, "go1.") {
			t.Errorf("%v: exit %d, %q; want %q", args, code, out, want)
		}
	}
	if code, _, _ := run(t, "version", "x"); code != exitUsage {
		t.Errorf("version x: exit %d, want %d", code, exitUsage)
	}
}

// TestStatusEndpointFields: /status names the build, the next calendar
// firing, every sleeve and every price with its age, and omits unset
// times; /metrics has rebalancerd_build_info.
func TestStatusEndpointFields(t *testing.T) {
	now := time.Date(2026, 11, 30, 14, 0, 0, 0, time.UTC) // a Monday, 09:00 in New York
	d := startDaemon(t, policyText("hybrid", newYork+"0 10 * * MON-FRI"), now, nil)
	d.prices("VTI", "100", "BND", "100")
	var doc statusdoc.Document
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		_, body := d.httpGet("/status")
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			return err
		}
		if p := doc.Policy("test-household"); p == nil || len(p.Sleeves) == 0 {
			return fmt.Errorf("not evaluated with prices yet: %s", body)
		}
		if strings.Contains(body, "0001-01-01") {
			t.Fatalf("/status shows an unset time:\n%s", body)
		}
		return nil
	})
	p := doc.Policy("test-household")
	if want := time.Date(2026, 11, 30, 15, 0, 0, 0, time.UTC); !p.NextFiring.Equal(want) || p.NextTrigger != "hybrid" {
		t.Errorf("next firing %s %q, want %s hybrid", p.NextFiring, p.NextTrigger, want)
	}
	var sleeves []string
	for _, s := range p.Sleeves {
		sleeves = append(sleeves, s.Sleeve+"="+s.Weight)
	}
	if got := strings.Join(sleeves, " "); got != "stocks=0.6 bonds=0.35 cash=0.05" {
		t.Errorf("sleeves %s", got)
	}
	if len(p.Prices) != 2 || p.Prices[0].Symbol != "BND" || p.Prices[0].Price != "100" || p.Prices[0].Age != "0s" {
		t.Errorf("prices %+v", p.Prices)
	}
	if doc.Build.GoVersion == "" || doc.Build.Version == "" || !doc.At.Equal(now) {
		t.Errorf("build %+v at %s", doc.Build, doc.At)
	}
	if _, body := d.httpGet("/metrics"); !strings.Contains(body, "rebalancerd_build_info{") {
		t.Error("/metrics has no rebalancerd_build_info")
	}
}

func TestStatusCommand(t *testing.T) {
	now := time.Date(2026, 11, 29, 5, 42, 40, 0, time.UTC)
	doc := statusdoc.Document{Role: "planner", Build: buildinfo.Info{Version: "v1.2.3", Commit: "abc", GoVersion: "go1.26.0"}}
	doc.At, doc.NATSConnected, doc.LastReload.OK = now, true, true
	body, _ := json.Marshal(&doc)
	raw := strings.Replace(string(body), `"policies":null`, `"policies":[{"policy":"jones","trigger":"threshold","total_value":"100.00",
		"sleeves":[{"sleeve":"crypto","target":"0.05","weight":"0.101","deviation":"0.051","band_low":"0.03","band_high":"0.07","breach":true},
		{"sleeve":"crypto/large_cap","parent":"crypto","target":"0.0325","weight":"0.02","deviation":"-0.0125","band_low":"0.0125","band_high":"0.0525"}],
		"pending_orders":[{"order_id":"abc-1","status":"published","created_at":"2026-11-29T05:41:10Z","account":"roth","side":"sell",
		"quantity":"120","instrument":"VTI","price":"285.12","filled":"0","sleeve":"crypto","rule":"to_band_edge"}],
		"blocked":[{"reason":"pending_orders","detail":"1 order of plan abc"}]}]`, 1)
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Get("Authorization")
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(raw))
	}))
	defer srv.Close()

	code, out, errOut := run(t, "status", "-url", srv.URL)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"rebalancerd v1.2.3 (abc), planner, as of 2026-11-29T05:42:40Z",
		"NATS connected; kill switch released",
		"jones: trigger threshold, total value 100.00",
		"SLEEVE       WEIGHT  TARGET  BAND         DRIFT     STATE",
		"crypto       10.10%  5.00%   3.00%–7.00%  +5.10 pt  OUT",
		"  large_cap  2.00%   3.25%   1.25%–5.25%  -1.25 pt  in",
		"abc-1  published  1m30s ago  roth     sell  120       VTI         285.12  0       crypto: to_band_edge",
		"blocked: pending_orders: 1 order of plan abc",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if auth != "" {
		t.Errorf("Authorization %q sent without a token", auth)
	}
	code, out, _ = run(t, "status", "-url", srv.URL, "-policy", "jones", "-json")
	var ps map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &ps) != nil || ps["policy"] != "jones" {
		t.Errorf("status -policy jones -json: exit %d, %s", code, out)
	}
	if code, _, errOut := run(t, "status", "-url", srv.URL, "-policy", "nobody"); code != exitInvalid || !strings.Contains(errOut, `no policy "nobody" (the daemon runs: jones)`) {
		t.Errorf("unknown policy: exit %d, %s", code, errOut)
	}
	if code, _, errOut := run(t, "status", "-url", "http://127.0.0.1:1"); code != exitInvalid || !strings.Contains(errOut, "is rebalancerd running?") {
		t.Errorf("no daemon: exit %d, %s", code, errOut)
	}
}

// TestBadFlagExitsUsage: an unknown flag is a bad command line, exit 2 as
// the README says, for every command (plan -bogus exited 1).
func TestBadFlagExitsUsage(t *testing.T) {
	for _, cmd := range []string{"check", "plan", "run", "tail", "halt", "paper", "status"} {
		code, _, errOut := run(t, cmd, "-bogus")
		if code != exitUsage || !strings.Contains(errOut, "flag provided but not defined: -bogus") {
			t.Errorf("%s -bogus: exit %d, want %d; stderr %q", cmd, code, exitUsage, errOut)
		}
	}
	if code, _, _ := run(t, "backtest", "-bogus"); code != exitUsage {
		t.Errorf("backtest -bogus: exit %d, want %d", code, exitUsage)
	}
}
