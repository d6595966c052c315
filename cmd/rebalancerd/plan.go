package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/drift"
	"github.com/rebalancerd/rebalancerd/internal/plan"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/targets"
)

// PlanCommand prints the drift of every sleeve and the orders that bring
// the household back to its policy. It exits 0 whether or not there are
// orders; only bad input fails it. A policy with a glide path or tilts is
// planned on its effective targets at the -at time (default now), and the
// output says which glide path rows and tilts applied.
//
// -deposit AMOUNT adds AMOUNT to the cash of -account and invests the
// free cash buy-only (plan.Invest; -deposit 0 invests what the holdings
// already show, a dividend for example); -withdraw AMOUNT raises AMOUNT in
// -account by selling only (plan.Withdraw). -account may be left out when
// the policy has one account.
type PlanCommand struct {
	Stdout io.Writer
	// Stderr receives flag errors and -h; Stdout when nil.
	Stderr io.Writer
	// Now gives the default -at time; nil means time.Now.
	Now func() time.Time
}

// planOutput is the JSON form: the plan, and how the effective targets came
// about when the policy has a glide path or tilts.
type planOutput struct {
	*plan.Plan
	Strategy *targets.Explanation `json:"strategy,omitempty"`
}

// Run executes the command.
func (c *PlanCommand) Run(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("rebalancerd plan", flag.ContinueOnError)
	fs.SetOutput(c.Stdout)
	if c.Stderr != nil {
		fs.SetOutput(c.Stderr)
	}
	var in inputs
	fs.StringVar(&in.policyFile, "policy", "", "policy `file` (YAML)")
	fs.StringVar(&in.holdingsFile, "holdings", "", "holdings `file` (YAML)")
	fs.StringVar(&in.pricesFile, "prices", "", "prices `file` (YAML)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of tables")
	dest := fs.String("destination", "", "override the policy's destination: target, band_edge or midway")
	atFlag := fs.String("at", "", "`time` (RFC 3339, or a date like 2026-11-20 for midnight UTC) of the glide path and tilts; default now")
	var flow cashFlowFlags
	fs.StringVar(&flow.deposit, "deposit", "", "add this `amount` to -account's cash and invest the free cash without selling")
	fs.StringVar(&flow.withdraw, "withdraw", "", "raise this `amount` of cash in -account (or the accounts in withdrawal order) by selling, without buying")
	fs.StringVar(&flow.account, "account", "", "`name` of the account of -deposit (needed when the policy has several) or -withdraw (default: split across the accounts in tax.withdrawals.order, each paying what it can)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := flow.check(*dest); err != nil {
		return err
	}
	at, err := c.at(*atFlag)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("plan: unexpected argument %q", fs.Arg(0))}
	}
	if in.policyFile == "" || in.holdingsFile == "" || in.pricesFile == "" {
		return usageError{"plan: -policy, -holdings and -prices are required"}
	}
	if err := in.load(); err != nil {
		return err
	}
	d := in.policy.Rebalance.Destination
	if *dest != "" {
		switch d = policy.Destination(*dest); d {
		case policy.DestinationTarget, policy.DestinationBandEdge, policy.DestinationMidway:
		default:
			return usageError{fmt.Sprintf("plan: -destination %q: want target, band_edge or midway", *dest)}
		}
	}
	eff, ex, err := targets.Effective(in.policy, at)
	if err != nil {
		return err
	}
	book := in.book
	if eff != in.policy {
		// Bind checks prices against the targets that apply.
		if book, err = portfolio.Bind(eff, in.holdings, in.prices); err != nil {
			return err
		}
	}
	if !in.policy.HasStrategy() {
		ex = nil
	}
	p, err := flow.plan(book, d, plan.Options{History: in.holdings.Trades}, in.policy.PhaseIn, at)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(planOutput{Plan: p, Strategy: ex})
	}
	return writeText(c.Stdout, p, ex)
}

// at returns the time the -at flag gives, or now.
func (c *PlanCommand) at(flagValue string) (time.Time, error) {
	if flagValue == "" {
		if c.Now != nil {
			return c.Now(), nil
		}
		return time.Now(), nil
	}
	if t, err := time.Parse(time.RFC3339, flagValue); err == nil {
		return t, nil
	}
	if t, err := time.Parse(policy.DateLayout, flagValue); err == nil {
		return t, nil
	}
	return time.Time{}, usageError{fmt.Sprintf("plan: -at %q: want an RFC 3339 time like 2026-11-20T21:00:00Z or a date like 2026-11-20", flagValue)}
}

// writeStrategy says which glide path rows and tilts gave the targets.
func writeStrategy(w io.Writer, ex *targets.Explanation) {
	fmt.Fprintf(w, "targets for %s", ex.Date)
	switch g := ex.Glide; {
	case ex.Bands != nil:
		b := ex.Bands
		ramp := ""
		if b.RampTo != "" {
			ramp = fmt.Sprintf(", ramping to band %s, %s of the way", b.RampTo, pct(b.Fraction))
		}
		fmt.Fprintf(w, ": glide band %s (line %d)%s; age %s (%d years %d days)\n", b.Band, b.Line, ramp, b.Age.StringFixed(4), b.Years, b.Days)
	case g == nil:
		fmt.Fprintln(w, ": no glide path")
	case g.FromAge == g.ToAge || g.Fraction.IsZero():
		fmt.Fprintf(w, ": glide path row of age %d (line %d); age %s (%d years %d days)\n", g.FromAge, g.FromLine, g.Age.StringFixed(4), g.Years, g.Days)
	default:
		fmt.Fprintf(w, ": glide path between the rows of age %d (line %d) and age %d (line %d), %s of the way; age %s (%d years %d days)\n",
			g.FromAge, g.FromLine, g.ToAge, g.ToLine, pct(g.Fraction), g.Age.StringFixed(4), g.Years, g.Days)
	}
	for _, a := range ex.Active {
		clamped := ""
		if a.Clamped() {
			clamped = fmt.Sprintf(", clamped to %s", signedPct(a.Applied))
		}
		fmt.Fprintf(w, "tilt active: %s %s until %s (from %s%s): %s\n", a.Sleeve, signedPct(a.Tilt), a.Until, strings.Join(a.From, ", "), clamped, a.Reason)
	}
	for _, e := range ex.Expired {
		fmt.Fprintf(w, "tilt expired: %s %s ended %s: %s\n", e.Sleeve, signedPct(e.Tilt), e.Until, e.Reason)
	}
}

func signedPct(d decimal.Decimal) string {
	if d.Sign() > 0 {
		return "+" + pct(d)
	}
	return pct(d)
}

func pct(d decimal.Decimal) string { return d.Shift(2).StringFixed(2) + "%" }

func writeText(w io.Writer, p *plan.Plan, ex *targets.Explanation) error {
	fmt.Fprintf(w, "policy %s (version %s), prices as of %s, holdings as of %s\n",
		p.Policy, p.PolicyVersion, p.AsOf.Format("2006-01-02 15:04 MST"), p.HoldingsAsOf.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "investable value %s %s (reserves excluded), destination %s, plan %s\n",
		p.Total.StringFixed(2), p.Currency, p.Destination, p.ID)
	if ex != nil {
		writeStrategy(w, ex)
	}
	if p.CashFlow != nil {
		writeCashFlow(w, p)
	}
	for _, x := range p.Waiting {
		next := ""
		if !x.Next.IsZero() {
			next = ", next " + x.Next.Format("2006-01-02 15:04 MST")
		}
		fmt.Fprintf(w, "phase-in: %s %s of %s in %s waits for later steps (step %d of %d%s); it is not in the values below\n",
			x.Amount.StringFixed(2), p.Currency, x.ID, x.Account, x.Step, x.Steps, next)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SLEEVE\tVALUE\tTARGET\tWEIGHT\tDEVIATION\tBAND\tBREACH\tAFTER\t")
	for _, s := range p.Sleeves {
		breach := ""
		if s.Breach {
			breach = "yes"
		}
		depth := strings.Count(s.Sleeve, "/")
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s-%s\t%s\t%s\t\n", strings.Repeat("  ", depth), s.Sleeve,
			s.Value.StringFixed(2), pct(s.Target), pct(s.Weight), pct(s.Deviation), pct(s.BandLow), pct(s.BandHigh), breach, pct(s.WeightAfter))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(p.Orders) == 0 {
		fmt.Fprintln(w, "no orders")
	} else {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PHASE\tACCOUNT\tSIDE\tQUANTITY\tINSTRUMENT\tPRICE\tNOTIONAL\tSLEEVE\tRULE\tORDER ID")
		for _, o := range p.Orders {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.Phase, o.Account, o.Side, o.Quantity, o.Instrument,
				o.Price, o.Notional.StringFixed(2), o.Sleeve, o.Rule, o.ID)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if err := writeBeforeAfter(w, p); err != nil {
			return err
		}
	}
	if p.Tax != nil {
		if err := writeTax(w, p); err != nil {
			return err
		}
	}
	for _, u := range p.Unresolved {
		if u.Sleeve == "" {
			fmt.Fprintf(w, "unresolved: %s\n", u.Reason)
			continue
		}
		fmt.Fprintf(w, "unresolved: %s stays at %s: %s\n", u.Sleeve, pct(u.WeightAfter), u.Reason)
	}
	return nil
}

// writeBeforeAfter prints, under the orders, each sleeve's weight before
// and after them, its target and band, and whether it is inside the band
// before and after.
func writeBeforeAfter(w io.Writer, p *plan.Plan) error {
	inOut := func(breach bool) string {
		if breach {
			return "out"
		}
		return "in"
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SLEEVE\tBEFORE\t\tAFTER\t\tTARGET\tBAND\t")
	for _, s := range p.Sleeves {
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\t%s\t%s-%s\t\n", strings.Repeat("  ", strings.Count(s.Sleeve, "/")), s.Sleeve,
			pct(s.Weight), inOut(s.Breach), pct(s.WeightAfter), inOut(s.BreachAfter), pct(s.Target), pct(s.BandLow), pct(s.BandHigh))
	}
	return tw.Flush()
}

// writeTax prints the tax side of a tax-aware plan: the lots each sell in
// a taxable account sells, the estimated gains, and what the tax rules
// kept out of the plan. Amounts are rounded to cents for display.
func writeTax(w io.Writer, p *plan.Plan) error {
	t := p.Tax
	fmt.Fprintf(w, "\ntax, trade date %s: short-term gains %s, losses %s; long-term gains %s, losses %s; net %s %s\n",
		t.TradeDate, t.Gains.ShortTermGains.StringFixed(2), t.Gains.ShortTermLosses.StringFixed(2),
		t.Gains.LongTermGains.StringFixed(2), t.Gains.LongTermLosses.StringFixed(2), t.Net.StringFixed(2), p.Currency)
	if len(t.BasisUnknown) > 0 {
		fmt.Fprintf(w, "gains incomplete: no lots, so no cost basis, for the sells of %s\n", strings.Join(t.BasisUnknown, ", "))
	}
	var lots bool
	for _, o := range p.Orders {
		lots = lots || len(o.Lots) > 0
	}
	if lots {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ORDER ID\tLOT\tACQUIRED\tQUANTITY\tCOST BASIS\tPROCEEDS\tGAIN\tTERM")
		for _, o := range p.Orders {
			for _, s := range o.Lots {
				term := "short"
				if s.LongTerm {
					term = "long"
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, s.Lot, s.Acquired, s.Quantity,
					s.Basis.StringFixed(2), s.Proceeds.StringFixed(2), s.Gain.StringFixed(2), term)
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, o := range p.Orders {
		if ws := o.WashSale; ws != nil {
			fmt.Fprintf(w, "wash sale: %s sells %s %s: loss disallowed %s %s (added to the replacements' basis %s, lost for good %s)\n",
				o.ID, o.Quantity, o.Instrument, ws.Disallowed.StringFixed(2), p.Currency, ws.BasisAdded.StringFixed(2), ws.Permanent.StringFixed(2))
			for _, r := range ws.Replacements {
				how := "basis +" + r.Disallowed.StringFixed(2) + ", held since " + r.HoldingFrom.String()
				if r.Permanent {
					how = r.Disallowed.StringFixed(2) + " lost for good: bought in a tax-advantaged account"
				}
				fmt.Fprintf(w, "  lot %d replaced by %s %s bought %s in %s: %s\n", r.Lot, r.Quantity, r.Instrument, r.Date, r.Account, how)
			}
		}
	}
	if d := t.Disallowed; d != nil {
		fmt.Fprintf(w, "wash sales in all: loss disallowed %s %s (added to basis %s, lost for good %s)\n",
			d.Disallowed.StringFixed(2), p.Currency, d.BasisAdded.StringFixed(2), d.Permanent.StringFixed(2))
	}
	for _, h := range t.HeldBack {
		fmt.Fprintf(w, "held back: %s %s %s: %s\n", h.Account, h.Quantity, h.Instrument, h.Reason)
	}
	for _, k := range t.WashSale {
		moved := "no other instrument of the sleeve takes its share"
		if len(k.MovedTo) > 0 {
			moved = "its share goes to " + strings.Join(k.MovedTo, ", ")
		}
		fmt.Fprintf(w, "not bought: %s (%s): %s; %s\n", k.Instrument, k.Sleeve, k.Reason, moved)
	}
	for _, n := range t.NotRelocated {
		fmt.Fprintf(w, "not relocated: %s: %s\n", n.Instrument, n.Reason)
	}
	return nil
}

// cashFlowFlags are the -deposit, -withdraw and -account flags.
type cashFlowFlags struct {
	deposit, withdraw, account string
	amount                     decimal.Decimal
}

// check validates the flags; dest is the -destination flag, which a cash
// flow does not take.
func (f *cashFlowFlags) check(dest string) error {
	flag, text := "", ""
	switch {
	case f.deposit != "" && f.withdraw != "":
		return usageError{"plan: -deposit and -withdraw exclude each other"}
	case f.deposit != "":
		flag, text = "-deposit", f.deposit
	case f.withdraw != "":
		flag, text = "-withdraw", f.withdraw
	case f.account != "":
		return usageError{"plan: -account goes with -deposit or -withdraw"}
	default:
		return nil
	}
	if dest != "" {
		return usageError{fmt.Sprintf("plan: %s moves toward the targets without selling or buying; it does not take -destination", flag)}
	}
	amount, err := decimaltext.Parse(text)
	if err != nil || amount.Sign() < 0 || (flag == "-withdraw" && amount.Sign() == 0) {
		return usageError{fmt.Sprintf("plan: %s %q: want an amount like 2500 or 2500.50 (positive for -withdraw)", flag, text)}
	}
	f.amount = amount
	return nil
}

// plan plans book with options o (the recent trades of the holdings
// file): a cash flow when the flags ask for one, otherwise a plan to
// destination d. Under a phase_in rule, a household's first investment
// and a deposit above deposits_above are invested in steps: the plan is
// the first step, begun at time at, and lists the cash waiting.
func (f *cashFlowFlags) plan(book *portfolio.Book, d policy.Destination, o plan.Options, rule *policy.PhaseIn, at time.Time) (*plan.Plan, error) {
	if f.deposit == "" && f.withdraw == "" {
		if phases := plan.FirstInvestment(drift.Compute(book), rule, at); phases != nil {
			w := plan.WaitingAt(phases, at)
			p := plan.Invest(drift.Compute(plan.HoldBack(book, w)), o)
			p.Waiting = w
			return p, nil
		}
		o.Destination = d
		return plan.MakeWith(drift.Compute(book), o), nil
	}
	pol := book.Policy
	a := 0
	switch {
	case f.account != "":
		var ok bool
		if a, ok = pol.AccountIndex(f.account); !ok {
			return nil, usageError{fmt.Sprintf("plan: -account %q: policy %s has no such account", f.account, pol.Name)}
		}
	case f.withdraw != "":
		// Split in the account order of tax.withdrawals: taxable first by
		// default, each account paying what it can.
		return plan.Withdraw(drift.Compute(book), o, plan.Withdrawal{Amount: f.amount})
	case len(pol.Accounts) > 1:
		return nil, usageError{fmt.Sprintf("plan: policy %s has %d accounts: say which with -account", pol.Name, len(pol.Accounts))}
	}
	if f.deposit != "" {
		book = plan.AddCash(book, a, f.amount)
		var w []plan.Waiting
		if rule.IsPhased(f.amount) {
			c := targets.NewCashPhase("deposit", pol.Accounts[a].Name, f.amount, at, rule)
			w = plan.WaitingAt([]targets.CashPhase{c}, at)
		}
		p := plan.Invest(drift.Compute(plan.HoldBack(book, w)), o)
		p.Waiting = w
		return p, nil
	}
	return plan.Withdraw(drift.Compute(book), o, plan.Withdrawal{Account: pol.Accounts[a].Name, Amount: f.amount})
}

// writeCashFlow says what a cash-flow plan does with the money.
func writeCashFlow(w io.Writer, p *plan.Plan) {
	cf := p.CashFlow
	if cf.Kind == plan.CashFlowInvest {
		fmt.Fprintf(w, "cash flow: invest %s %s of free cash without selling; the orders buy %s\n",
			cf.Amount.StringFixed(2), p.Currency, cf.Traded.StringFixed(2))
		if cf.DepositToBands == nil {
			fmt.Fprintln(w, "no deposit alone brings every sleeve inside its band without selling")
		} else {
			fmt.Fprintf(w, "deposit to return inside the bands without selling: %s %s more\n", cf.DepositToBands.StringFixed(2), p.Currency)
		}
		return
	}
	from, its := cf.Account, "its"
	if cf.Account == "" {
		var names []string
		for _, part := range cf.Accounts {
			names = append(names, part.Account)
		}
		from, its = strings.Join(names, ", ")+" in the order of withdrawals", "their"
	}
	fmt.Fprintf(w, "cash flow: withdraw %s %s from %s without buying: %s from %s free cash, sells raise %s; withdrawn %s, short %s\n",
		cf.Amount.StringFixed(2), p.Currency, from, cf.FromCash.StringFixed(2), its, cf.Traded.StringFixed(2),
		cf.Withdrawn.StringFixed(2), cf.Shortfall.StringFixed(2))
	for _, part := range cf.Accounts {
		fmt.Fprintf(w, "  %s pays %s: %s from its free cash, sells raise %s; estimated tax %s\n", part.Account,
			part.Withdrawn.StringFixed(2), part.FromCash.StringFixed(2), part.Traded.StringFixed(2), part.Tax.Tax.StringFixed(2))
	}
	if e := cf.Tax; e != nil {
		fmt.Fprintf(w, "estimated tax: %s %s (ordinary income %s, additional 10%% %s, capital gains %s)\n",
			e.Tax.StringFixed(2), p.Currency, e.OrdinaryIncome.StringFixed(2), e.Additional.StringFixed(2), e.CapitalGains.StringFixed(2))
		for _, n := range e.Notes {
			fmt.Fprintf(w, "  %s\n", n)
		}
	}
}
