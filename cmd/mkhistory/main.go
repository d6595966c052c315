// Command mkhistory turns the public market data in configs/history/source
// into the total-return price histories that `rebalancerd backtest -history`
// reads, in configs/examples/backtest. The method is in
// configs/history/README.md; run it with `go generate ./configs/...` or
//
//	go run ./cmd/mkhistory -source configs/history/source -out configs/examples/backtest
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/rebalancerd/rebalancerd/internal/history"
)

func main() {
	source := flag.String("source", "configs/history/source", "`directory` of the public source files")
	out := flag.String("out", "configs/examples/backtest", "`directory` to write the histories to")
	flag.Parse()
	if err := run(*source, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkhistory:", err)
		os.Exit(1)
	}
}

func run(source, out string) error {
	src, err := history.LoadSources(os.DirFS(source))
	if err != nil {
		return err
	}
	for _, e := range history.Examples {
		var buf bytes.Buffer
		if err := src.WriteExample(e, &buf); err != nil {
			return err
		}
		path := filepath.Join(out, e.Name)
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", path)
	}
	return nil
}
