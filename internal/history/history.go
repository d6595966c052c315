// Package history reads the price histories that a backtest replays: a CSV
// whose first column is `date` (YYYY-MM-DD) and whose other columns are
// instruments, each cell the instrument's price on that date (a total-return
// index level, so that income is in it). An empty cell is a missing price.
//
// Reading is strict: every refusal names the file, the line and the column.
// Nothing is carried forward here; Span says which dates have every price,
// and Carry fills gaps only when the caller allows it.
package history

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// DateLayout is how a history file writes its dates.
const DateLayout = "2006-01-02"

// MaxRows bounds how many dates one history file may hold (a century of
// daily rows is about 36,500), so that a hostile file cannot exhaust memory.
const MaxRows = 200_000

// Series is a price history: one row per date, in increasing date order.
type Series struct {
	// File is the name the series was read from, for messages.
	File string
	// Instruments are the price columns, in the file's order.
	Instruments []string
	// Rows are the dated prices, in increasing date order.
	Rows []Row
}

// Row is one date of a Series.
type Row struct {
	// Date is the civil date, at midnight UTC.
	Date time.Time
	// Line is the row's line in the file.
	Line int
	// Prices holds one price per instrument, in the Series' column order;
	// a missing price is the zero Decimal with Present false.
	Prices []decimal.Decimal
	// Present says which prices the row has.
	Present []bool
}

// Complete reports whether the row has a price for every instrument.
func (r Row) Complete() bool {
	for _, ok := range r.Present {
		if !ok {
			return false
		}
	}
	return true
}

// Read parses a history file. known says whether a column names an
// instrument of the policy; nil accepts any well-formed name.
func Read(file string, r io.Reader, known func(instrument string) bool) (*Series, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = false
	cr.FieldsPerRecord = 0 // every row as wide as the header
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: empty file: want a header line `date,<instrument>,...`", file)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(header) < 2 || strings.TrimSpace(strings.TrimPrefix(header[0], "\ufeff")) != "date" {
		return nil, fmt.Errorf("%s:1: the first column must be `date`, followed by one column per instrument", file)
	}
	s := &Series{File: file}
	seen := map[string]bool{}
	for i, h := range header[1:] {
		name := strings.TrimSpace(h)
		switch {
		case name == "":
			return nil, fmt.Errorf("%s:1: column %d has no instrument name", file, i+2)
		case seen[name]:
			return nil, fmt.Errorf("%s:1: column %q appears twice", file, name)
		case known != nil && !known(name):
			return nil, fmt.Errorf("%s:1: column %q names no instrument of the policy", file, name)
		}
		seen[name] = true
		s.Instruments = append(s.Instruments, name)
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if len(s.Rows) == MaxRows {
			return nil, fmt.Errorf("%s:%d: more than %d rows", file, line, MaxRows)
		}
		row, err := s.parseRow(rec, line)
		if err != nil {
			return nil, err
		}
		if n := len(s.Rows); n > 0 && !row.Date.After(s.Rows[n-1].Date) {
			return nil, fmt.Errorf("%s:%d: date %s is not after %s (line %d): dates must be in increasing order",
				file, line, row.Date.Format(DateLayout), s.Rows[n-1].Date.Format(DateLayout), s.Rows[n-1].Line)
		}
		s.Rows = append(s.Rows, row)
	}
	if len(s.Rows) == 0 {
		return nil, fmt.Errorf("%s: no dated rows after the header", file)
	}
	return s, nil
}

func (s *Series) parseRow(rec []string, line int) (Row, error) {
	d, err := time.Parse(DateLayout, strings.TrimSpace(rec[0]))
	if err != nil {
		return Row{}, fmt.Errorf("%s:%d: date %.20q: want YYYY-MM-DD", s.File, line, rec[0])
	}
	row := Row{Date: d, Line: line, Prices: make([]decimal.Decimal, len(s.Instruments)), Present: make([]bool, len(s.Instruments))}
	for i, cell := range rec[1:] {
		cell = strings.TrimSpace(cell)
		if cell == "" {
			continue
		}
		p, err := strictyaml.ParseDecimal(cell)
		if err != nil {
			return Row{}, fmt.Errorf("%s:%d: column %q: %w", s.File, line, s.Instruments[i], err)
		}
		if p.Sign() <= 0 {
			return Row{}, fmt.Errorf("%s:%d: column %q: price %s must be positive", s.File, line, s.Instruments[i], p)
		}
		row.Prices[i], row.Present[i] = p, true
	}
	return row, nil
}

// Coverage is the first and last date with a price for one instrument.
type Coverage struct {
	Instrument  string
	First, Last time.Time
}

// Span says which dates a replay can use: from the first date on which
// every instrument has a price to the last such date, and each instrument's
// own coverage, so that a report can say why the span is what it is. ok is
// false when no row has every price.
func (s *Series) Span() (from, to time.Time, cover []Coverage, ok bool) {
	cover = make([]Coverage, len(s.Instruments))
	for i, name := range s.Instruments {
		cover[i].Instrument = name
		for _, r := range s.Rows {
			if !r.Present[i] {
				continue
			}
			if cover[i].First.IsZero() {
				cover[i].First = r.Date
			}
			cover[i].Last = r.Date
		}
	}
	for _, r := range s.Rows {
		if !r.Complete() {
			continue
		}
		if !ok {
			from, ok = r.Date, true
		}
		to = r.Date
	}
	return from, to, cover, ok
}

// Carry returns a copy of the series in which each missing price is the
// instrument's last earlier price, from the first row on which every
// instrument has had a price. It never invents a price before an
// instrument's first one.
func (s *Series) Carry() *Series {
	out := &Series{File: s.File, Instruments: s.Instruments}
	last := make([]decimal.Decimal, len(s.Instruments))
	have := make([]bool, len(s.Instruments))
	for _, r := range s.Rows {
		c := Row{Date: r.Date, Line: r.Line, Prices: make([]decimal.Decimal, len(r.Prices)), Present: make([]bool, len(r.Present))}
		for i := range r.Prices {
			if r.Present[i] {
				last[i], have[i] = r.Prices[i], true
			}
			c.Prices[i], c.Present[i] = last[i], have[i]
		}
		out.Rows = append(out.Rows, c)
	}
	return out
}

// Write writes the series in the format Read reads; missing prices are
// empty cells.
func (s *Series) Write(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(append([]string{"date"}, s.Instruments...)); err != nil {
		return err
	}
	rec := make([]string, len(s.Instruments)+1)
	for _, r := range s.Rows {
		rec[0] = r.Date.Format(DateLayout)
		for i, p := range r.Prices {
			rec[i+1] = ""
			if r.Present[i] {
				rec[i+1] = p.String()
			}
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
