// Package buildinfo says which build of rebalancerd is running: the
// module version, the VCS commit and the Go version, as the Go toolchain
// records them in the binary (runtime/debug.ReadBuildInfo).
//
// A binary built by `go build` inside a git checkout carries the commit
// (vcs.revision) and whether the tree had uncommitted changes
// (vcs.modified); `go install module@version` carries the module version.
// Version can also be set at link time for packages built from a tarball:
//
//	go build -ldflags "-X github.com/rebalancerd/rebalancerd/internal/buildinfo.version=v1.2.3
//	  -X github.com/rebalancerd/rebalancerd/internal/buildinfo.commit=0123abcd"
package buildinfo

import (
	"fmt"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// version and commit, when set with -ldflags -X, override the module
// version and fill in the commit when the binary carries no VCS stamp (a
// package built with -buildvcs=false or outside git, as packaging does).
var version, commit string

// Info is what a binary knows of its build.
type Info struct {
	// Version is the module version ("v1.2.3"), the link-time version,
	// or "(devel)" for a binary built from a checkout.
	Version string `json:"version"`
	// Commit is the VCS revision, with "-dirty" when the tree had
	// uncommitted changes; empty when unknown (go test, go run outside
	// git).
	Commit string `json:"commit,omitempty"`
	// CommitTime is the time of that commit.
	CommitTime time.Time `json:"commit_time,omitzero"`
	// GoVersion is the toolchain that built the binary ("go1.26.0").
	GoVersion string `json:"go_version"`
}

// Read returns the running binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: orDevel(version), Commit: commit, GoVersion: "unknown"}
	}
	info := fromBuildInfo(bi, version)
	if info.Commit == "" {
		info.Commit = commit
	}
	return info
}

// fromBuildInfo extracts Info from bi; override, when set, is the version.
func fromBuildInfo(bi *debug.BuildInfo, override string) Info {
	info := Info{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	if override != "" {
		info.Version = override
	}
	info.Version = orDevel(info.Version)
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.time":
			if t, err := time.Parse(time.RFC3339, s.Value); err == nil {
				info.CommitTime = t
			}
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && info.Commit != "" {
		info.Commit += "-dirty"
	}
	return info
}

func orDevel(v string) string {
	if v == "" {
		return "(devel)"
	}
	return v
}

// String formats the information on one line, as `rebalancerd version`
// prints it.
func (i Info) String() string {
	commit := i.Commit
	if commit == "" {
		commit = "unknown"
	}
	return fmt.Sprintf("rebalancerd %s (commit %s, %s)", i.Version, commit, i.GoVersion)
}

// Collector returns the rebalancerd_build_info gauge: always 1, with the
// build in its labels (version, revision, goversion), as Prometheus' own
// build_info metrics do.
func (i Info) Collector() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rebalancerd_build_info",
		Help: "Always 1; the labels say which build of rebalancerd runs.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(i.Version, i.Commit, i.GoVersion).Set(1)
	return g
}
