package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/backtest"
	pricehistory "github.com/rebalancerd/rebalancerd/internal/history"
	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// maxHistorySize bounds a -history file (a century of daily prices for a
// dozen instruments is about 5 MiB).
const maxHistorySize = 64 << 20

// BacktestCommand replays a price history through the policy's own
// triggers, planner, ledger and tax rules (internal/backtest), and prints
// the figures of the policy as written and, with -compare, of buy-and-hold
// and the usual calendar, threshold and hybrid rules.
type BacktestCommand struct {
	Stdout io.Writer
}

// backtestOutput is the -json form.
type backtestOutput struct {
	From        string `json:"from"`
	To          string `json:"to"`
	Instruments []struct {
		Symbol string `json:"symbol"`
		First  string `json:"first"`
		Last   string `json:"last"`
	} `json:"instruments"`
	// Carried says that missing prices were carried forward (-carry).
	Carried     bool               `json:"carried"`
	FeeBps      decimal.Decimal    `json:"fee_bps"`
	SlippageBps decimal.Decimal    `json:"slippage_bps"`
	Variants    []backtest.Summary `json:"variants"`
}

// Run executes the command.
func (c *BacktestCommand) Run(_ context.Context, args []string) error {
	fs := flag.NewFlagSet("rebalancerd backtest", flag.ContinueOnError)
	fs.SetOutput(c.Stdout)
	policyFile := fs.String("policy", "", "policy `file` (YAML)")
	historyFile := fs.String("history", "", "price history `file` (CSV: date, then one column per instrument)")
	holdingsFile := fs.String("holdings", "", "start from this holdings `file` (YAML) instead of -initial")
	initial := fs.String("initial", "", "start with this `amount` of cash in the policy's first taxable account (else its first account)")
	fromFlag := fs.String("from", "", "first `date` replayed (YYYY-MM-DD)")
	toFlag := fs.String("to", "", "last `date` replayed (YYYY-MM-DD)")
	compare := fs.Bool("compare", false, "also run buy-and-hold, monthly, quarterly and annual calendars, the policy's bands as a threshold, and hybrid quarterly")
	feeBps := fs.String("fee-bps", "0", "fee of each order, in `basis points` of its notional")
	slipBps := fs.String("slippage-bps", "0", "`basis points` each fill's price moves against the trade")
	carry := fs.Bool("carry", false, "carry an instrument's last price forward over dates it has none")
	report := fs.String("report", "", "write a self-contained HTML report to this `file`")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("backtest: unexpected argument %q", fs.Arg(0))}
	}
	switch {
	case *policyFile == "" || *historyFile == "":
		return usageError{"backtest: -policy and -history are required"}
	case (*holdingsFile == "") == (*initial == ""):
		return usageError{"backtest: give one of -holdings and -initial"}
	}
	var cfg backtest.Config
	var err error
	if cfg.From, err = flagDate("-from", *fromFlag); err != nil {
		return err
	}
	if cfg.To, err = flagDate("-to", *toFlag); err != nil {
		return err
	}
	if cfg.FeeBps, err = flagBps("-fee-bps", *feeBps); err != nil {
		return err
	}
	if cfg.SlippageBps, err = flagBps("-slippage-bps", *slipBps); err != nil {
		return err
	}
	in := inputs{policyFile: *policyFile, holdingsFile: *holdingsFile}
	if err := in.load(); err != nil {
		return err
	}
	cfg.Policy = in.policy
	if cfg.History, err = readHistory(*historyFile, in.policy); err != nil {
		return err
	}
	if *carry {
		cfg.History = cfg.History.Carry()
	}
	from, to, cover, ok := cfg.History.Span()
	if !ok {
		return fmt.Errorf("%s: %w (use -carry to carry prices forward)", *historyFile, backtest.ErrNoDates)
	}
	if cfg.Holdings = in.holdings; cfg.Holdings == nil {
		if cfg.Holdings, err = initialCash(in.policy, *initial, from); err != nil {
			return err
		}
	}
	var results []*backtest.Result
	if *compare {
		results, err = backtest.Compare(cfg)
	} else {
		var r *backtest.Result
		r, err = backtest.Run(cfg, backtest.AsWritten)
		results = []*backtest.Result{r}
	}
	if err != nil {
		return err
	}
	first, last := results[0].Points[0].Date, results[0].Points[len(results[0].Points)-1].Date
	out := backtestOutput{From: first.Format(pricehistory.DateLayout), To: last.Format(pricehistory.DateLayout), Carried: *carry,
		FeeBps: cfg.FeeBps, SlippageBps: cfg.SlippageBps}
	for _, cv := range cover {
		out.Instruments = append(out.Instruments, struct {
			Symbol string `json:"symbol"`
			First  string `json:"first"`
			Last   string `json:"last"`
		}{cv.Instrument, cv.First.Format(pricehistory.DateLayout), cv.Last.Format(pricehistory.DateLayout)})
	}
	for _, r := range results {
		out.Variants = append(out.Variants, r.Summary())
	}
	if *report != "" {
		if err := writeReport(*report, backtest.Report{Policy: in.policy, From: out.From, To: out.To, Carried: *carry,
			FeeBps: cfg.FeeBps, SlippageBps: cfg.SlippageBps, Results: results, Summaries: out.Variants}); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	return writeBacktestText(c.Stdout, in.policy, out, from, to)
}

// writeReport writes the HTML report to a new file next to its final
// name and renames it into place, so that a failed run leaves no half file.
func writeReport(name string, r backtest.Report) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), ".backtest-*.html")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := r.WriteHTML(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("report %s: %w", name, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}

func flagDate(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(pricehistory.DateLayout, v)
	if err != nil {
		return time.Time{}, usageError{fmt.Sprintf("backtest: %s %q: want a date like 2020-01-31", name, v)}
	}
	return t, nil
}

func flagBps(name, v string) (decimal.Decimal, error) {
	d, err := strictyaml.ParseDecimal(v)
	if err != nil || d.Sign() < 0 || d.GreaterThan(decimal.NewFromInt(10000)) {
		return decimal.Zero, usageError{fmt.Sprintf("backtest: %s %q: want basis points from 0 to 10000", name, v)}
	}
	return d, nil
}

// readHistory reads a -history file, refusing columns that name no
// instrument of the policy.
func readHistory(name string, pol *policy.Policy) (*pricehistory.Series, error) {
	data, err := inputfile.Read(name, maxHistorySize)
	if err != nil {
		return nil, err
	}
	return pricehistory.Read(name, bytes.NewReader(data), func(sym string) bool {
		_, ok := pol.InstrumentIndex(sym)
		return ok
	})
}

// initialCash is a household with amount in cash in the policy's first
// taxable account, or its first account, as of the first date.
func initialCash(pol *policy.Policy, amount string, at time.Time) (*portfolio.Holdings, error) {
	d, err := strictyaml.ParseDecimal(amount)
	if err != nil || d.Sign() <= 0 {
		return nil, usageError{fmt.Sprintf("backtest: -initial %q: want a positive amount like 100000", amount)}
	}
	acc := pol.Accounts[0].Name
	for _, a := range pol.Accounts {
		if a.Type == policy.AccountTaxable {
			acc = a.Name
			break
		}
	}
	h := &portfolio.Holdings{File: "-initial", AsOf: at}
	for _, a := range pol.Accounts {
		ah := portfolio.AccountHoldings{Name: a.Name}
		if a.Name == acc {
			ah.Cash = d
		}
		h.Accounts = append(h.Accounts, ah)
	}
	return h, nil
}

func pctf(x float64) string { return fmt.Sprintf("%.2f%%", 100*x) }

func writeBacktestText(w io.Writer, pol *policy.Policy, out backtestOutput, from, to time.Time) error {
	fmt.Fprintf(w, "policy %s: %s to %s", pol.Name, out.From, out.To)
	if out.Carried {
		fmt.Fprint(w, " (missing prices carried forward)")
	}
	fmt.Fprintf(w, ", fee %s bps, slippage %s bps\n", out.FeeBps, out.SlippageBps)
	var late []string
	for _, i := range out.Instruments {
		if i.First != from.Format(pricehistory.DateLayout) || i.Last != to.Format(pricehistory.DateLayout) {
			late = append(late, fmt.Sprintf("%s %s..%s", i.Symbol, i.First, i.Last))
		}
	}
	if len(late) > 0 {
		fmt.Fprintf(w, "instruments priced on different spans: %s\n", strings.Join(late, ", "))
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "VARIANT\tTRIGGER\tFINAL VALUE\tCAGR\tVOLATILITY\tMAX DRAWDOWN\tTRACKING ERR\tREBALANCES\tORDERS\tTURNOVER/YR\tCOSTS\tST GAINS\tLT GAINS\tDAYS OUT\t")
	for _, v := range out.Variants {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t\n", v.Name, v.Trigger, v.FinalValue.StringFixed(2),
			pctf(v.CAGR), pctf(v.Volatility), pctf(v.MaxDrawdown), pctf(v.TrackingError), v.Rebalances, v.Orders,
			pctf(v.Turnover), v.Costs.StringFixed(2), v.RealizedGains.ShortTerm.StringFixed(2), v.RealizedGains.LongTerm.StringFixed(2), v.DaysOutOfBand)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, v := range out.Variants {
		if v.RejectedPlans > 0 {
			fmt.Fprintf(w, "%s: %d plans refused by the policy's risk limits (not traded)\n", v.Name, v.RejectedPlans)
		}
	}
	return nil
}
