package feeds

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/decimaltext"
	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/portfolio"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// FileFetcher reads quotes from a prices file, again on every poll, so that
// a process (or a person) can update prices by rewriting the file.
type FileFetcher struct {
	path  string
	parse func(file string, data []byte) ([]Quote, error)
}

// NewFileFetcher returns a fetcher of the prices file at path. Its format
// follows the extension:
//
//   - .yaml or .yml: the prices file read by portfolio.ParsePrices; every
//     quote's time is the file's as_of.
//   - .csv: one quote per row, "symbol,price,time", with an optional header
//     row "symbol,price,time"; see parseCSV.
func NewFileFetcher(path string) (*FileFetcher, error) {
	f := &FileFetcher{path: path}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml":
		f.parse = parseYAMLPrices
	case ".csv":
		f.parse = parseCSV
	default:
		return nil, fmt.Errorf("prices file %s: unknown extension %q (want .yaml, .yml or .csv)", path, filepath.Ext(path))
	}
	return f, nil
}

// Fetch reads and parses the file. Problems in it are reported as
// strictyaml.Errors, each naming the file, the line and the field.
func (f *FileFetcher) Fetch(ctx context.Context) ([]Quote, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, err := inputfile.Read(f.path, strictyaml.MaxFileSize)
	if err != nil {
		return nil, err
	}
	return f.parse(f.path, data)
}

// parseYAMLPrices reads a prices file with portfolio.ParsePrices and returns
// its quotes sorted by symbol.
func parseYAMLPrices(file string, data []byte) ([]Quote, error) {
	p, err := portfolio.ParsePrices(file, data)
	if err != nil {
		return nil, err
	}
	if len(p.Quotes) == 0 {
		return nil, strictyaml.Errors{{File: file, Line: p.Line, Field: "prices", Msg: "no quotes"}}
	}
	out := make([]Quote, 0, len(p.Quotes))
	for sym, q := range p.Quotes {
		out = append(out, Quote{Symbol: sym, Price: q.Price, At: q.At.UTC()})
	}
	slices.SortFunc(out, func(a, b Quote) int { return strings.Compare(a.Symbol, b.Symbol) })
	return out, nil
}

// csvColumns are the columns of a CSV prices file, in order; a first row
// holding exactly these names is a header.
var csvColumns = []string{"symbol", "price", "time"}

// parseCSV reads a CSV prices file:
//
//	symbol,price,time
//	VTI,285.12,2026-11-20T21:00:00Z
//	BTC,67187.33,2026-11-20T21:04:05Z
//
// The header row is optional; lines starting with # are comments. A price
// is a plain positive decimal (the rules of decimaltext.Parse), a
// time is RFC 3339, and each symbol appears once. Every problem is
// reported, as strictyaml.Errors naming file, line and column name; a CSV
// syntax error stops the reading.
func parseCSV(file string, data []byte) ([]Quote, error) {
	data = bytes.TrimPrefix(data, []byte("\uFEFF")) // spreadsheets write a byte order mark
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1 // checked here, for a clearer message
	r.Comment = '#'
	r.TrimLeadingSpace = true
	var (
		errs  strictyaml.Errors
		out   []Quote
		first = map[string]int{} // symbol -> line of its first row
	)
	fail := func(line int, field, format string, args ...any) {
		errs = append(errs, &strictyaml.Error{File: file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	for row := 0; ; row++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				fail(pe.Line, "", "%v (column %d)", pe.Err, pe.Column)
			} else {
				fail(0, "", "%v", err)
			}
			break
		}
		line, _ := r.FieldPos(0)
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}
		if row == 0 && slices.Equal(rec, csvColumns) {
			continue
		}
		if len(rec) != len(csvColumns) {
			fail(line, "", "want 3 fields (symbol,price,time), got %d", len(rec))
			continue
		}
		fieldLine := func(i int) int { l, _ := r.FieldPos(i); return l }
		q := Quote{Symbol: rec[0]}
		ok := true
		if err := checkSymbol(q.Symbol); err != nil {
			fail(line, "symbol", "%v", err)
			ok = false
		} else if l, dup := first[q.Symbol]; dup {
			fail(line, "symbol", "duplicate symbol %s (first at line %d)", q.Symbol, l)
			ok = false
		} else {
			first[q.Symbol] = line
		}
		if p, err := decimaltext.Parse(rec[1]); err != nil {
			fail(fieldLine(1), "price", "%v", err)
			ok = false
		} else if err := checkPrice(p); err != nil {
			fail(fieldLine(1), "price", "%v", err)
			ok = false
		} else {
			q.Price = p
		}
		if t, err := time.Parse(time.RFC3339, rec[2]); err != nil {
			fail(fieldLine(2), "time", "want an RFC 3339 time like 2026-11-20T21:00:00Z, got %.40q", rec[2])
			ok = false
		} else {
			q.At = t.UTC()
		}
		if ok {
			out = append(out, q)
		}
	}
	if len(errs) == 0 && len(out) == 0 {
		fail(0, "", "no quotes")
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Quote) int { return strings.Compare(a.Symbol, b.Symbol) })
	return out, nil
}
