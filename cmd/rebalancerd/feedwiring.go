// Feed wiring: each configured price feed built from the daemon config,
// and its state exported as metrics.

package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/config"
	"github.com/rebalancerd/rebalancerd/internal/events"
	"github.com/rebalancerd/rebalancerd/internal/feeds"
	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/metrics"
	rnats "github.com/rebalancerd/rebalancerd/internal/nats"
)

// feed builds a feed source from its configuration.
func (m *Main) feed(f config.Feed) (feeds.Source, error) {
	if f.Kind == config.FeedNATS {
		return feeds.NewNATSFeed(m.Conn, events.Subjects{Prefix: m.Config.NATS.Prefix}.Prices(), m.Log.Named("feed"),
			feeds.WithNATSName(f.Name), feeds.WithNATSClock(m.Clock.Now)), nil
	}
	fetcher, pc, err := buildFetcher(f, m.Env, m.Clock.Now)
	if err != nil {
		return nil, err
	}
	return feeds.NewPoller(f.Name, f.Kind, fetcher, pc, m.Log.Named("feed")), nil
}

// buildFetcher builds a polled feed's fetcher and poll settings: it reads
// the API key (a private file or an environment variable) and the feed's
// files, so that `check -config` finds what `run` would fail on.
func buildFetcher(f config.Feed, env func(string) string, now func() time.Time) (feeds.Fetcher, feeds.PollConfig, error) {
	var pc feeds.PollConfig
	key := ""
	switch {
	case f.APIKeyFile != "":
		if err := rnats.CheckPrivate("api key file", f.APIKeyFile); err != nil {
			return nil, pc, err
		}
		data, err := inputfile.Read(f.APIKeyFile, inputfile.MaxSecretSize)
		if err != nil {
			return nil, pc, fmt.Errorf("api key: %w", err)
		}
		key = string(trimSpace(data))
	case f.APIKeyEnv != "":
		if key = env(f.APIKeyEnv); key == "" {
			return nil, pc, fmt.Errorf("api key: environment variable %s is not set", f.APIKeyEnv)
		}
	}
	var fetcher feeds.Fetcher
	var err error
	switch f.Kind {
	case config.FeedFile:
		fetcher, err = feeds.NewFileFetcher(f.Path)
	case config.FeedReplay:
		fetcher, err = feeds.NewReplayFetcher(f.Path, now)
	case config.FeedHTTP:
		fetcher, err = feeds.NewHTTPFetcher(feeds.HTTPConfig{URL: f.URL, Header: f.Header, APIKey: key,
			Fields: f.Fields, TimeFields: f.TimeFields, Clock: now})
	case config.FeedCoinGecko:
		fetcher, err = feeds.NewCoinGecko(feeds.CoinGeckoConfig{BaseURL: f.URL, IDs: f.IDs, VsCurrency: f.VsCurrency,
			Header: f.Header, APIKey: key})
	default:
		return nil, pc, fmt.Errorf("unknown kind %q", f.Kind)
	}
	if err != nil {
		return nil, pc, err
	}
	pc = feeds.DefaultPollConfig()
	pc.Interval, pc.Timeout, pc.Retries, pc.Clock = f.Interval, f.Timeout, f.Retries, now
	if err := pc.Validate(); err != nil {
		return nil, pc, err
	}
	return fetcher, pc, nil
}

// feedMetrics copies the feeds' status into the metrics every few seconds
// (and once more when ctx ends).
func (m *Main) feedMetrics(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	last := make([]feeds.Status, len(m.sources))
	for {
		for i, s := range m.sources {
			st := s.Status()
			m.Metrics.FeedPolls.WithLabelValues(st.Name).Add(float64(st.Polls - last[i].Polls))
			m.Metrics.FeedErrors.WithLabelValues(st.Name).Add(float64(st.Failures - last[i].Failures))
			for reason, n := range st.Rejected {
				if d := n - last[i].Rejected[reason]; d > 0 {
					m.Metrics.InputsRejected.WithLabelValues(metrics.InputPrice, reason).Add(float64(d))
				}
			}
			last[i] = st
			if !st.LastSuccess.IsZero() {
				m.Metrics.FeedLastSuccess.WithLabelValues(st.Name).Set(float64(st.LastSuccess.Unix()))
			}
			open := 0.0
			if st.BreakerOpen {
				open = 1
			}
			m.Metrics.FeedBreakerOpen.WithLabelValues(st.Name).Set(open)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
