package backtest

import (
	"math"
	"time"

	"github.com/shopspring/decimal"
)

// Summary is a variant's figures, as `backtest -json` prints them: money
// as decimal strings, ratios as numbers (fractions: 0.07 is 7%).
type Summary struct {
	Name    string `json:"name"`
	Trigger string `json:"trigger"`
	// FinalValue is the household's value on the last date, to the cent
	// (rounded half away from zero).
	FinalValue decimal.Decimal `json:"final_value"`
	// CAGR is the compound annual growth rate of the time-weighted
	// return (contributions taken out).
	CAGR float64 `json:"cagr"`
	// Volatility is the standard deviation of the period returns,
	// annualised by the square root of the periods per year.
	Volatility float64 `json:"volatility"`
	// MaxDrawdown is the largest fall from a peak of the time-weighted
	// index, as a positive fraction.
	MaxDrawdown float64 `json:"max_drawdown"`
	// TrackingError is the annualised standard deviation of the period
	// return less that of the target portfolio rebalanced continuously
	// (the targets in effect at the start of each period).
	TrackingError float64 `json:"tracking_error"`
	Rebalances    int     `json:"rebalances"`
	Orders        int     `json:"orders"`
	// Turnover is the notional traded (buys and sells) over the average
	// value, per year.
	Turnover float64 `json:"turnover"`
	// Costs are fees and slippage, to the cent.
	Costs         decimal.Decimal `json:"costs"`
	RealizedGains Gains           `json:"realized_gains"`
	// DaysOutOfBand counts the calendar days on which a sleeve was
	// outside its band after the day's trades.
	DaysOutOfBand int `json:"days_out_of_band"`
	// RejectedPlans counts plans the policy's risk limits refused.
	RejectedPlans int `json:"rejected_plans"`
}

const day = 24 * time.Hour

// Years is the span of the replay in years of 365.25 days.
func (r *Result) Years() float64 {
	if len(r.Points) < 2 {
		return 0
	}
	return r.Points[len(r.Points)-1].Date.Sub(r.Points[0].Date).Hours() / 24 / 365.25
}

// Returns are the time-weighted period returns: each date's value less
// its inflow over the previous date's value, less one.
func (r *Result) Returns() []float64 {
	out := make([]float64, 0, len(r.Points))
	for i := 1; i < len(r.Points); i++ {
		prev := r.Points[i-1].Value
		if prev.Sign() <= 0 {
			out = append(out, 0)
			continue
		}
		x, _ := r.Points[i].Value.Sub(r.Points[i].Inflow).DivRound(prev, 16).Float64()
		out = append(out, x-1)
	}
	return out
}

// benchmark returns the period returns of the target portfolio
// rebalanced continuously.
func (r *Result) benchmark() []float64 {
	pol := r.Policy
	out := make([]float64, 0, len(r.Points))
	for t := 1; t < len(r.Points); t++ {
		sum := 0.0
		for i, ins := range pol.Instruments {
			p0, p1 := r.Points[t-1].Prices[i], r.Points[t].Prices[i]
			if p0.Sign() <= 0 {
				continue
			}
			w, _ := r.Targets[t-1][ins.Sleeve].Mul(ins.Share).Float64()
			ret, _ := p1.DivRound(p0, 16).Float64()
			sum += w * (ret - 1)
		}
		out = append(out, sum)
	}
	return out
}

func stdev(x []float64) float64 {
	if len(x) < 2 {
		return 0
	}
	mean := 0.0
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	ss := 0.0
	for _, v := range x {
		ss += (v - mean) * (v - mean)
	}
	return math.Sqrt(ss / float64(len(x)-1))
}

// Summary computes the figures of the result.
func (r *Result) Summary() Summary {
	s := Summary{Name: r.Variant, Trigger: r.Trigger, Rebalances: r.Rebalances, Orders: r.Orders,
		Costs: r.Costs.Round(2), RealizedGains: r.Gains, RejectedPlans: r.Rejected}
	if len(r.Points) == 0 {
		return s
	}
	s.FinalValue = r.Points[len(r.Points)-1].Value.Round(2)
	years := r.Years()
	rets := r.Returns()
	index, peak := 1.0, 1.0
	for _, x := range rets {
		index *= 1 + x
		peak = math.Max(peak, index)
		s.MaxDrawdown = math.Max(s.MaxDrawdown, 1-index/peak)
	}
	if years > 0 {
		s.CAGR = math.Pow(index, 1/years) - 1
		perYear := float64(len(rets)) / years
		s.Volatility = stdev(rets) * math.Sqrt(perYear)
		bench := r.benchmark()
		diff := make([]float64, len(rets))
		for i := range rets {
			diff[i] = rets[i] - bench[i]
		}
		s.TrackingError = stdev(diff) * math.Sqrt(perYear)
		avg := decimal.Zero
		for _, p := range r.Points {
			avg = avg.Add(p.Value)
		}
		if avg.Sign() > 0 {
			avg = avg.DivRound(decimal.NewFromInt(int64(len(r.Points))), 8)
			t, _ := r.Traded.DivRound(avg, 16).Float64()
			s.Turnover = t / years
		}
	}
	for i := 0; i+1 < len(r.Points); i++ {
		if r.Points[i].OutAfter {
			s.DaysOutOfBand += int(r.Points[i+1].Date.Sub(r.Points[i].Date) / day)
		}
	}
	return s
}

// Compare runs the policy as written and every variant of Compared.
func Compare(cfg Config) ([]*Result, error) {
	out := make([]*Result, 0, 1+len(Compared))
	for _, v := range append([]Variant{AsWritten}, Compared...) {
		r, err := Run(cfg, v)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
