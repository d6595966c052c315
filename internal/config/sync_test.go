package config

import (
	"strings"
	"testing"
	"time"
)

func TestEmbeddedSyncInterval(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  time.Duration
		err   string
	}{
		{"always", 0, ""},
		{"2m", 2 * time.Minute, ""},
		{"never", 0, `c.yml:5: nats.embedded.sync_interval: want a positive duration like 5m or 1h, got "never"`},
	} {
		data := "policies:\n  - {policy: p.yaml, holdings: h.yaml}\nnats:\n  embedded:\n    sync_interval: " + tt.value + "\n"
		c, err := Parse("c.yml", []byte(data), nil)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.value, err, tt.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tt.value, err)
		case c.NATS.EmbeddedSync != tt.want:
			t.Errorf("%s: sync %v, want %v", tt.value, c.NATS.EmbeddedSync, tt.want)
		}
	}
}
