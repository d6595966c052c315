package history

import (
	"fmt"
	"io"
	"io/fs"
	"time"
)

// The instrument names of the shipped backtest histories. Each is a proxy
// built from public data (configs/history/README.md says how), not a fund.
const (
	// EquitiesTR is the S&P Composite with dividends reinvested monthly.
	EquitiesTR = "SPX-TR"
	// BondsTR is a constant-maturity 10-year Treasury priced from its yield.
	BondsTR = "UST10-TR"
	// HomePrices is the Case-Shiller U.S. National Home Price Index, a
	// proxy for a real-estate sleeve (not investable, no rent income).
	HomePrices = "US-HOME"
	// Gold is the monthly gold price in USD per troy ounce.
	Gold = "GOLD"
	// Bitcoin is the daily bitcoin close in USD, a proxy for a crypto index.
	Bitcoin = "BTC"
)

// Source file names inside configs/history/source.
const (
	ShillerFile = "sp500-shiller-monthly.csv"
	HouseFile   = "us-house-prices-national-monthly.csv"
	GoldFile    = "gold-monthly.csv"
	BitcoinFile = "btc-usd-daily.csv"
)

// Example is one shipped backtest history and how it is made.
type Example struct {
	// Name is the output file name.
	Name string
	// From and To bound the dates kept (inclusive).
	From, To time.Time
	// Columns lists the instruments, in file order.
	Columns []string
}

func month(y int, m time.Month) time.Time { return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC) }

// Examples are the histories shipped in configs/examples/backtest.
//
// The first ends in 2023-06, the last month of Shiller's file with a
// published dividend, so that equities stay total return; the second spans
// the bitcoin file, with monthly equities and bonds beside daily bitcoin.
var Examples = []Example{
	{Name: "history-1975-2023.csv", From: month(1975, time.January), To: month(2023, time.June),
		Columns: []string{EquitiesTR, BondsTR, HomePrices, Gold}},
	{Name: "history-2014-2021-crypto.csv", From: time.Date(2014, time.September, 17, 0, 0, 0, 0, time.UTC), To: time.Date(2021, time.August, 24, 0, 0, 0, 0, time.UTC),
		Columns: []string{EquitiesTR, BondsTR, Bitcoin}},
}

// Sources holds every derived series, by instrument name.
type Sources map[string][]Point

// LoadSources reads the public source files from dir and derives the
// total-return and proxy series.
func LoadSources(dir fs.FS) (Sources, error) {
	read := func(name string, zeroIsMissing bool, cols ...string) (map[string][]Point, error) {
		f, err := dir.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return ReadColumns(name, f, zeroIsMissing, cols...)
	}
	shiller, err := read(ShillerFile, true, "SP500", "Dividend", "Long Interest Rate")
	if err != nil {
		return nil, err
	}
	house, err := read(HouseFile, false, "National-US")
	if err != nil {
		return nil, err
	}
	gold, err := read(GoldFile, false, "Price")
	if err != nil {
		return nil, err
	}
	btc, err := read(BitcoinFile, false, "Close")
	if err != nil {
		return nil, err
	}
	return Sources{
		EquitiesTR: EquityTotalReturn(shiller["SP500"], shiller["Dividend"]),
		BondsTR:    BondTotalReturn(shiller["Long Interest Rate"]),
		HomePrices: house["National-US"],
		Gold:       gold["Price"],
		Bitcoin:    btc["Close"],
	}, nil
}

// Build lays out one example from the sources. Index levels are rebased
// to Base at the example's first date, so that each file reads as growth
// of 100.
func (s Sources) Build(e Example) (*Series, error) {
	cols := make([]Column, 0, len(e.Columns))
	for _, name := range e.Columns {
		pts, ok := s[name]
		if !ok {
			return nil, fmt.Errorf("example %s: no source series %q", e.Name, name)
		}
		cols = append(cols, Column{Instrument: name, Points: rebase(pts, e.From)})
	}
	return Combine(e.Name, e.From, e.To, cols...), nil
}

// rebase scales a series so that its first point on or after from is Base,
// rounding each level to Places.
func rebase(pts []Point, from time.Time) []Point {
	for i, p := range pts {
		if p.Date.Before(from) {
			continue
		}
		out := make([]Point, 0, len(pts)-i)
		for _, q := range pts[i:] {
			out = append(out, Point{q.Date, q.Value.Mul(Base).DivRound(p.Value, Places)})
		}
		return out
	}
	return nil
}

// WriteExample builds e and writes it to w.
func (s Sources) WriteExample(e Example, w io.Writer) error {
	series, err := s.Build(e)
	if err != nil {
		return err
	}
	return series.Write(w)
}
