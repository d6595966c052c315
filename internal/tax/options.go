package tax

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/shopspring/decimal"
)

// ShortTermGains says whether sales in taxable accounts may realize
// short-term gains.
type ShortTermGains string

// The values of ShortTermGains. The empty value means ShortTermAllow; any
// other value is treated as ShortTermBlock (and refused by Validate).
const (
	ShortTermAllow ShortTermGains = "allow"
	ShortTermBlock ShortTermGains = "block"
)

// blocks reports whether s keeps short-term-gain lots from being sold.
func (s ShortTermGains) blocks() bool { return s != "" && s != ShortTermAllow }

// DefaultWashSaleWindow is the wash-sale window when the policy sets none:
// 30 days before and after a loss sale (26 U.S.C. §1091).
const DefaultWashSaleWindow = 30

// Options are a policy's tax rules for taxable accounts. The zero value
// allows short-term gains, waits for no lot, guards buys with a 30-day
// wash-sale window in every asset class, and harvests nothing.
type Options struct {
	// ShortTermGains blocks or allows selling lots at a short-term gain.
	ShortTermGains ShortTermGains
	// WaitLongTermDays, when positive, holds back lots at a short-term
	// gain that turn long-term within that many days of the sale date.
	WaitLongTermDays int
	WashSale         WashSale
	Harvest          Harvest
	// LossesLast makes Lots.Select sell lots at a loss after all the
	// others: a planner asks for it when the loss would be disallowed by
	// the wash-sale rule (see WashSale.Match). The policy does not set it.
	LossesLast bool
}

// WashSale configures the wash-sale guard: no buy of an instrument, or of
// one in the same substitute group, within the window of a loss sale of it
// in any account of the household.
//
// Asset classes are sleeve paths ("crypto", "equity/us"). The rule for an
// instrument is that of the longest path in Exempt or Windows that is its
// sleeve or an ancestor of it: Exempt skips the guard, Windows sets the
// window; with neither, Window applies.
type WashSale struct {
	// Window is the number of days before and after a loss sale during
	// which buys are blocked; zero means DefaultWashSaleWindow.
	Window int
	// Windows overrides Window for sleeves and everything under them.
	Windows map[string]int
	// Exempt lists sleeves whose instruments the guard does not apply to
	// (crypto, for instance, where the law has no wash-sale rule).
	Exempt []string
	// SubstituteGroups are groups of instruments the guard treats as one
	// (substantially identical): a loss sale of any blocks buys of all.
	SubstituteGroups [][]string
}

// Harvest configures tax-loss harvesting: selling lots whose unrealized loss
// exceeds a threshold and buying a substitute, so that the sleeve keeps its
// weight while the loss is realized.
type Harvest struct {
	Enabled bool
	// MinLoss is the least loss of a lot worth harvesting, in the policy
	// currency; zero means no such threshold.
	MinLoss decimal.Decimal
	// MinLossPct is the least loss of a lot worth harvesting as a fraction
	// of its cost basis (0.1 for 10%); zero means no such threshold. A lot
	// must exceed every threshold set; at least one must be.
	MinLossPct decimal.Decimal
	// Substitutes names, for each instrument that may be harvested, the
	// instrument to buy in its place. It must not be in the same substitute
	// group, or the wash-sale guard would block the buy.
	Substitutes map[string]string
}

// Validate reports every inconsistency of o, one per line, naming the
// option as the policy file would (wash_sale.window, harvest.min_loss...).
func (o Options) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if o.ShortTermGains != "" && o.ShortTermGains != ShortTermAllow && o.ShortTermGains != ShortTermBlock {
		bad("short_term_gains", "want %s or %s, got %q", ShortTermAllow, ShortTermBlock, o.ShortTermGains)
	}
	if o.WaitLongTermDays < 0 {
		bad("wait_long_term_days", "must not be negative, got %d", o.WaitLongTermDays)
	}
	w := o.WashSale
	if w.Window < 0 {
		bad("wash_sale.window", "must not be negative, got %d", w.Window)
	}
	for _, class := range sortedKeys(w.Windows) {
		if n := w.Windows[class]; n <= 0 {
			bad("wash_sale.windows."+class, "must be positive, got %d; list the sleeve under exempt to skip the guard", n)
		}
	}
	for _, class := range w.Exempt {
		if _, ok := w.Windows[class]; ok {
			bad("wash_sale.exempt", "%s also has a window under wash_sale.windows", class)
		}
	}
	group := map[string]int{}
	for g, members := range w.SubstituteGroups {
		if len(members) < 2 {
			bad(fmt.Sprintf("wash_sale.substitute_groups[%d]", g), "a group needs at least two instruments, got %d", len(members))
		}
		for _, sym := range members {
			if first, ok := group[sym]; ok {
				bad(fmt.Sprintf("wash_sale.substitute_groups[%d]", g), "%s is already in group %d", sym, first)
				continue
			}
			group[sym] = g
		}
	}
	h := o.Harvest
	if h.MinLoss.Sign() < 0 {
		bad("harvest.min_loss", "must not be negative, got %s", h.MinLoss)
	}
	if h.MinLossPct.Sign() < 0 || h.MinLossPct.GreaterThan(decimal.NewFromInt(1)) {
		bad("harvest.min_loss_pct", "must be between 0%% and 100%%, got %s%%", h.MinLossPct.Shift(2))
	}
	if h.Enabled && h.MinLoss.Sign() <= 0 && h.MinLossPct.Sign() <= 0 {
		bad("harvest", "enabled without a threshold: set min_loss or min_loss_pct")
	}
	if h.Enabled && len(h.Substitutes) == 0 {
		bad("harvest.substitutes", "harvesting is enabled but no instrument has a substitute")
	}
	for _, sym := range sortedKeys(h.Substitutes) {
		sub := h.Substitutes[sym]
		if sub == "" || sub == sym {
			bad("harvest.substitutes."+sym, "the substitute must be another instrument, got %q", sub)
		} else if w.same(sym, sub) {
			bad("harvest.substitutes."+sym, "%s is in the same substitute group as %s: the wash-sale guard would block buying it", sub, sym)
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// WindowOf returns the window, in days, that applies to instruments of
// sleeve class, and whether the class is exempt from the rule.
func (w WashSale) WindowOf(class string) (days int, exempt bool) { return w.rule(class) }

// rule returns the window, in days, that applies to instruments of sleeve
// class, and whether the class is exempt from the guard.
func (w WashSale) rule(class string) (window int, exempt bool) {
	window, best := w.Window, -1
	if window <= 0 {
		window = DefaultWashSaleWindow
	}
	for path, days := range w.Windows {
		if covers(path, class) && len(path) > best {
			window, best = days, len(path)
		}
	}
	for _, path := range w.Exempt {
		if covers(path, class) && len(path) > best {
			return 0, true
		}
	}
	if window <= 0 { // a bad override: fail closed with the default
		window = DefaultWashSaleWindow
	}
	return window, false
}

// covers reports whether sleeve path is class or an ancestor of it.
func covers(path, class string) bool {
	return class == path || strings.HasPrefix(class, path) && len(class) > len(path) && class[len(path)] == '/'
}

// same reports whether the guard treats instruments a and b as one: the
// same symbol, or both in one substitute group.
func (w WashSale) same(a, b string) bool {
	if a == b {
		return true
	}
	for _, g := range w.SubstituteGroups {
		var hasA, hasB bool
		for _, sym := range g {
			hasA = hasA || sym == a
			hasB = hasB || sym == b
		}
		if hasA && hasB {
			return true
		}
	}
	return false
}
