package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/browsertest"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/ledger"
)

// pageSleeve is a sleeve row as the browser shows it.
type pageSleeve struct {
	Sleeve string `json:"sleeve"`
	Weight string `json:"weight"` // data-weight: the exact figure
	Shown  string `json:"shown"`  // the visible text, "60.29%"
	Breach bool   `json:"breach"` // the row is marked
	State  string `json:"state"`  // "OUT" or "in band"
}

const readSleevesJS = `Array.from(document.querySelectorAll('#allocation tr[data-sleeve]')).map(r => ({
	sleeve: r.dataset.sleeve, weight: r.dataset.weight,
	shown: r.querySelector('.weight').textContent.trim(),
	breach: r.classList.contains('breach'),
	state: r.querySelector('.state').textContent.trim()}))`

// TestStatusPageInBrowser runs the real daemon on the shipped example and
// looks at the status page in a real browser (chromium through chromedp):
// every sleeve of jones-household with the weight /status reports, the
// breaching ones marked, the pending orders of the first plan, and, after
// a fill is published, the page updating by itself (no reload); then the
// paper executor fills the rest and the page shows the household back
// inside its bands.
func TestStatusPageInBrowser(t *testing.T) {
	ctx := browsertest.New(t, 3*time.Minute)
	bin := buildBinary(t)
	d := startExample(t, bin)
	const policy = "jones-household"
	d.waitPending(policy, -1)

	page := d.httpURL + "/household/" + policy
	if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(`#allocation tr[data-sleeve]`)); err != nil {
		t.Fatal(err)
	}

	// The weights move while the replay feed steps through its prices: the
	// page (which refreshes itself) and /status must agree at some point,
	// and on every sleeve at once.
	checkFor(t, 30*time.Second, 250*time.Millisecond, func() error {
		rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]pageSleeve](readSleevesJS))
		if err != nil {
			return err
		}
		p := d.status().Policy(policy)
		if len(rows) != len(p.Sleeves) || len(rows) == 0 {
			return fmt.Errorf("page shows %d sleeves, /status %d", len(rows), len(p.Sleeves))
		}
		for i, sl := range p.Sleeves {
			r := rows[i]
			w := decimal.RequireFromString(sl.Weight)
			want := w.Shift(2).StringFixed(2) + "%"
			if r.Sleeve != sl.Sleeve || r.Weight != sl.Weight || r.Shown != want {
				return fmt.Errorf("row %d: page %+v, /status %s weight %s (shown as %s)", i, r, sl.Sleeve, sl.Weight, want)
			}
			if r.Breach != sl.Breach || (r.State == "OUT") != sl.Breach {
				return fmt.Errorf("sleeve %s: page marks breach=%v %q, /status says breach=%v", sl.Sleeve, r.Breach, r.State, sl.Breach)
			}
		}
		if !slices.ContainsFunc(rows, func(r pageSleeve) bool { return r.Breach }) {
			return fmt.Errorf("no breaching sleeve on the page: %+v", rows)
		}
		if !slices.ContainsFunc(rows, func(r pageSleeve) bool { return r.Sleeve == "crypto/large_cap" }) {
			return fmt.Errorf("nested sleeve crypto/large_cap missing: %+v", rows)
		}
		return nil
	})

	// The pending orders of the first plan, as /status lists them.
	doc := d.status()
	p := doc.Policy(policy)
	var want []string
	for _, o := range p.PendingOrders {
		want = append(want, o.OrderID)
	}
	got, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#pending tr[data-order]')).map(r => r.dataset.order)`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) || len(want) == 0 {
		t.Fatalf("page lists pending orders %v, /status %v", got, want)
	}

	// Keyboard: the first Tab reaches the skip link.
	if err := chromedp.Do(ctx, chromedp.KeyEvent("\t")); err != nil {
		t.Fatal(err)
	}
	if cls, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.activeElement.className`)); err != nil || cls != "skip" {
		t.Errorf("first Tab focuses %q (%v), want the skip link", cls, err)
	}

	browsertest.Screenshot(t, ctx, "status-page-household")
	if err := chromedp.Do(ctx, chromedp.Navigate(d.httpURL+"/"), chromedp.WaitVisible(`tr[data-policy]`)); err != nil {
		t.Fatal(err)
	}
	browsertest.Screenshot(t, ctx, "status-page-overview")
	if err := chromedp.Do(ctx, chromedp.Navigate(page), chromedp.WaitVisible(`#pending tr[data-order]`)); err != nil {
		t.Fatal(err)
	}

	// A fill, published as an executor would: the page shows it without a
	// reload (the marker set in this document survives).
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`window.rebalancerdTestMarker = 'same document'`)); err != nil {
		t.Fatal(err)
	}
	o := p.PendingOrders[0]
	f := events.Fill{SchemaVersion: 1, FillID: "browser-test-" + o.OrderID, OrderID: o.OrderID, Status: events.FillFilled,
		Quantity: o.Quantity, Price: o.Price, Fees: decimal.Zero, At: time.Now().UTC()}
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	nc := d.nats()
	if err := nc.Publish(events.Subjects{Prefix: events.DefaultPrefix}.Fill(o.Policy, o.Account), data); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 30*time.Second, 250*time.Millisecond, func() error {
		state, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](fmt.Sprintf(`[
			String(window.rebalancerdTestMarker),
			String(document.querySelector('#pending tr[data-order="%[1]s"]') !== null),
			(document.querySelector('#last-plan tr[data-order="%[1]s"]') || {dataset: {}}).dataset.status || 'absent']`, o.OrderID)))
		if err != nil {
			return err
		}
		if state[0] != "same document" {
			t.Fatalf("the page was reloaded (marker %q)", state[0])
		}
		if state[1] != "false" || state[2] != "filled" {
			return fmt.Errorf("order %s: still pending on the page: %v, last plan shows status %s", o.OrderID, state[1], state[2])
		}
		return nil
	})
	if st := d.status().Policy(policy); slices.ContainsFunc(st.PendingOrders, func(p2 *ledger.Order) bool { return p2.OrderID == o.OrderID }) {
		t.Errorf("/status still lists %s as pending", o.OrderID)
	}
	browsertest.Screenshot(t, ctx, "status-page-after-fill")

	// The paper executor fills the rest: the page shows the household
	// back inside its bands with nothing pending, still without a reload.
	paper := exec.Command(bin, "paper", "-server", d.natsURL)
	if err := paper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = paper.Process.Signal(os.Interrupt)
		_ = paper.Wait()
	}()
	checkFor(t, 60*time.Second, 250*time.Millisecond, func() error {
		rows, err := chromedp.Run(ctx, chromedp.Evaluate[[]pageSleeve](readSleevesJS))
		if err != nil {
			return err
		}
		pending, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#pending tr[data-order]').length`))
		if err != nil {
			return err
		}
		marker, err := chromedp.Run(ctx, chromedp.Evaluate[string](`String(window.rebalancerdTestMarker)`))
		if err != nil || marker != "same document" {
			t.Fatalf("the page was reloaded (marker %q, %v)", marker, err)
		}
		for _, r := range rows {
			if r.Breach || r.State != "in band" {
				return fmt.Errorf("sleeve %s still marked out of band (%d orders pending)", r.Sleeve, pending)
			}
		}
		if pending != 0 || len(rows) == 0 {
			return fmt.Errorf("%d orders pending on the page", pending)
		}
		return nil
	})
	if p := d.status().Policy(policy); len(p.Breaching) != 0 || len(p.PendingOrders) != 0 {
		t.Errorf("/status: breaching %v, %d pending, while the page shows none", p.Breaching, len(p.PendingOrders))
	}
	browsertest.Screenshot(t, ctx, "status-page-after-paper")

	// Without JavaScript the page is complete: every sleeve is there, and
	// it says that it does not update by itself.
	noJS := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
		return err
	})
	if err := chromedp.Do(ctx, noJS, chromedp.Navigate(page), chromedp.WaitVisible(`#allocation tr[data-sleeve]`)); err != nil {
		t.Fatal(err)
	}
	nodes, err := chromedp.Run(ctx, chromedp.Nodes(`#allocation tr[data-sleeve]`))
	if err != nil {
		t.Fatal(err)
	}
	state, err := chromedp.Run(ctx, chromedp.Text(`#refresh-state`))
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != len(d.status().Policy(policy).Sleeves) || state != "Reload the page to update it." {
		t.Errorf("without JavaScript: %d sleeve rows, refresh state %q", len(nodes), state)
	}
}
