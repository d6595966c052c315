package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/events"
)

// TestRejectedInputsAreCounted sends the daemon one bad input of each
// kind over NATS (price messages, fills and positions, control requests)
// and breaks its policy file; each is refused and counted in
// rebalancerd_inputs_rejected_total by kind and reason, and the running
// policy keeps working.
func TestRejectedInputsAreCounted(t *testing.T) {
	pol := policyText("threshold", "")
	d := startDaemon(t, pol, monday0959, nil)
	nc := d.client()
	subj := events.Subjects{Prefix: events.DefaultPrefix}
	at := d.clock.Now().UTC().Format(time.RFC3339)
	send := func(subject, data string) {
		t.Helper()
		if err := nc.Publish(subject, []byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	// Prices. A good one first: it is received once the feed has
	// subscribed, and core NATS drops what comes before.
	d.prices("VTI", "100", "BND", "100")
	send(subj.Price("VTI"), `{"symbol": "VTI", "price": "285.`)
	send(subj.Price("VTI"), `{"schema_version": 1, "symbol": "VTI", "price": "-1", "at": "`+at+`"}`)
	send(subj.Price("VTI"), `{"schema_version": 1, "symbol": "VTI", "price": "100", "at": "2030-01-01T00:00:00Z"}`)
	send(subj.Price("VTI"), `{"schema_version": 9, "symbol": "VTI", "price": "100", "at": "`+at+`"}`)
	// Reports.
	send(subj.Fill("test-household", "ira"), `{"schema_version":1,"fill_id":`)
	send(subj.Fill("nobody", "ira"), `{"schema_version":1,"fill_id":"f1","order_id":"o1","status":"filled","quantity":"1","price":"1","fees":"0","at":"`+at+`"}`)
	send(subj.Fill("test-household", "ira"), `{"schema_version":1,"fill_id":"f2","status":"filled"}`)
	send(subj.Positions("test-household"), `{"schema_version":1,"as_of":"`+at+`","accounts":{"ira":{"cash":"-5"}}}`)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Control.
	if _, err := nc.Request(subj.Control("halt"), []byte(`not json`), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Request(subj.Control("halt"), []byte(`{"schema_version":1}`), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// A broken policy edit.
	if err := os.WriteFile(d.policy, []byte(strings.Replace(pol, "stocks: 60%", "stocks: 70%", 1)), 0o644); err != nil {
		t.Fatal(err)
	}

	want := []string{
		`{input="price",reason="malformed"} 1`,
		`{input="price",reason="bad_price"} 1`,
		`{input="price",reason="future_time"} 1`,
		`{input="price",reason="schema_version"} 1`,
		`{input="report",reason="malformed"} 1`,
		`{input="report",reason="unknown_policy"} 1`,
		`{input="report",reason="missing_field"} 1`,
		`{input="report",reason="invalid_positions"} 1`,
		`{input="control",reason="malformed"} 1`,
		`{input="control",reason="missing_field"} 1`,
		`{input="policy_file",reason="invalid"} 1`,
	}
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		_, body := d.httpGet("/metrics")
		for _, w := range want {
			if !strings.Contains(body, "rebalancerd_inputs_rejected_total"+w+"\n") {
				return fmt.Errorf("no rebalancerd_inputs_rejected_total%s", w)
			}
		}
		return nil
	})

	// The policy still runs on good prices.
	d.prices("VTI", "100", "BND", "100")
	if st := d.policyStatus(); len(st.Blocked) > 0 || st.LastEvaluated.IsZero() {
		t.Errorf("policy after the bad inputs: blocked %v", st.Blocked)
	}
}
