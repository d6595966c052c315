package main

import (
	"context"
	"fmt"
	"io"

	"github.com/rebalancerd/rebalancerd/internal/buildinfo"
)

// VersionCommand prints the version, commit and Go version of the binary.
type VersionCommand struct {
	Stdout io.Writer
}

// Run executes the command.
func (c *VersionCommand) Run(_ context.Context, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Sprintf("version: unexpected argument %q", args[0])}
	}
	fmt.Fprintln(c.Stdout, buildinfo.Read())
	return nil
}
