package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-11-29T05:42:32Z"},
			{Key: "vcs.modified", Value: "true"}}}
	got := fromBuildInfo(bi, "")
	want := Info{Version: "(devel)", Commit: "abc123-dirty", CommitTime: time.Date(2026, 11, 29, 5, 42, 32, 0, time.UTC), GoVersion: "go1.26.0"}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if s := got.String(); s != "rebalancerd (devel) (commit abc123-dirty, go1.26.0)" {
		t.Fatalf("String() = %q", s)
	}
	bi.Settings = bi.Settings[:1]
	if got := fromBuildInfo(bi, "v1.2.3"); got.Version != "v1.2.3" || got.Commit != "abc123" {
		t.Fatalf("override: got %+v", got)
	}
	if got := fromBuildInfo(&debug.BuildInfo{GoVersion: "go1.26.0"}, ""); got.Version != "(devel)" || got.Commit != "" {
		t.Fatalf("empty: got %+v", got)
	}
}

func TestReadHasGoVersion(t *testing.T) {
	if got := Read(); got.GoVersion == "" || got.Version == "" {
		t.Fatalf("Read() = %+v", got)
	}
}

func TestCollector(t *testing.T) {
	i := Info{Version: "v1.2.3", Commit: "abc123", GoVersion: "go1.26.0"}
	want := `# HELP rebalancerd_build_info Always 1; the labels say which build of rebalancerd runs.
# TYPE rebalancerd_build_info gauge
rebalancerd_build_info{goversion="go1.26.0",revision="abc123",version="v1.2.3"} 1
`
	if err := testutil.CollectAndCompare(i.Collector(), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
