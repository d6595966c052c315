package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

// readmeBlock returns the lines of the first fenced block of README.md
// that comes after the line containing marker.
func readmeBlock(t *testing.T, marker string) []string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, marker)
	if i < 0 {
		t.Fatalf("README.md has no %q", marker)
	}
	text = text[i:]
	start := strings.Index(text, "```")
	if start < 0 {
		t.Fatalf("README.md: no code block after %q", marker)
	}
	text = text[start:]
	text = text[strings.IndexByte(text, '\n')+1:]
	end := strings.Index(text, "```")
	if end < 0 {
		t.Fatalf("README.md: unterminated code block after %q", marker)
	}
	return strings.Split(strings.TrimRight(text[:end], "\n"), "\n")
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	hexID  = regexp.MustCompile(`\b[0-9a-f]{16}\b`)
	spaces = regexp.MustCompile(`\s+`)
)

// normalize replaces plan ids and runs of spaces, which differ from run to
// run and with column widths.
func normalize(s string) string {
	return spaces.ReplaceAllString(hexID.ReplaceAllString(strings.TrimSpace(s), "PLANID"), " ")
}

// TestReadmeQuickStart runs the README's quick-start commands as written
// (the built binary for `go run ./cmd/rebalancerd`, on a copy of configs/
// with free ports) and checks what they print against the README: the
// daemon plans, `tail` prints the orders as the README shows them, `paper`
// fills them, and `status` shows jones-household inside its bands.
func TestReadmeQuickStart(t *testing.T) {
	bin := buildBinary(t)
	var cmds [][]string
	for _, line := range readmeBlock(t, "On a fresh machine") {
		if rest, ok := strings.CutPrefix(line, "go run ./cmd/rebalancerd "); ok {
			cmds = append(cmds, strings.Fields(rest))
		}
	}
	var names []string
	for _, c := range cmds {
		names = append(names, c[0])
	}
	if strings.Join(names, " ") != "run tail paper status" {
		t.Fatalf("README quick start runs %v, want run, tail, paper, status (update this test with the README)", names)
	}
	_, config, _ := exampleConfig(t)
	argv := func(c []string) []string {
		out := make([]string, len(c))
		for i, a := range c {
			out[i] = strings.ReplaceAll(a, "configs/rebalancerd.yaml", config)
		}
		return out
	}

	// 1. The daemon.
	daemon := exec.Command(bin, argv(cmds[0])...)
	stderr, err := daemon.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logLines{}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { logs.read(stderr); close(done) }()
	t.Cleanup(func() {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		<-done
		if err := daemon.Wait(); err != nil {
			t.Errorf("daemon exit: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.raw.String())
		}
	})
	logs.wait(t, "rebalancerd started")
	logs.wait(t, "orders acknowledged by JetStream", "policy", "jones-household", "orders", "10")

	// 2. tail and 3. paper, in the background as in their own terminals.
	var tailOut, paperOut syncBuffer
	background := func(c []string, stdout, stderr io.Writer) func() {
		cmd := exec.Command(bin, argv(c)...)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return func() {
			_ = cmd.Process.Signal(os.Interrupt) // Ctrl-C
			if err := cmd.Wait(); err != nil {
				t.Errorf("%s: exit after Ctrl-C: %v", c[0], err)
			}
		}
	}
	stopTail := background(cmds[1], &tailOut, io.Discard)
	defer stopTail()
	stopPaper := background(cmds[2], io.Discard, &paperOut)
	defer stopPaper()

	var tailLines []string
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		tailLines = strings.Split(strings.TrimSpace(tailOut.String()), "\n")
		if len(tailLines) < 11 {
			return fmt.Errorf("tail printed %d lines, want 10 orders and the plan:\n%s", len(tailLines), tailOut.String())
		}
		return nil
	})
	// The README's example tail output: its first and last orders and the
	// plan line, as printed (ids aside).
	want := readmeBlock(t, "**Watch the orders.**")
	got := map[string]bool{}
	for _, l := range tailLines {
		got[normalize(l)] = true
	}
	for _, l := range want {
		if l == "…" {
			continue
		}
		if !got[normalize(l)] {
			t.Errorf("README's tail line\n\t%s\nnot printed; tail printed:\n%s", l, strings.Join(tailLines, "\n"))
		}
	}
	checkFor(t, 30*time.Second, 50*time.Millisecond, func() error {
		if n := strings.Count(paperOut.String(), `"msg":"paper fill"`); n != 10 {
			return fmt.Errorf("paper logged %d fills, want 10:\n%s", n, paperOut.String())
		}
		return nil
	})

	// 4. status: jones-household inside its bands, nothing pending.
	var out string
	checkFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		b, err := exec.Command(bin, argv(cmds[3])...).CombinedOutput()
		out = string(b)
		if err != nil {
			return fmt.Errorf("status: %v\n%s", err, out)
		}
		if strings.Contains(out, " OUT ") || !strings.Contains(out, "pending orders: none") || !strings.Contains(out, "blocked: no") {
			return fmt.Errorf("jones-household not settled yet:\n%s", out)
		}
		return nil
	})
	// The README shows this output; its lines must be the program's, but
	// for the figures, which depend on the replay step of each evaluation.
	figures := regexp.MustCompile(`[-+]?\d[\d.:TZ-]*%?`)
	shape := func(s string) string { return normalize(figures.ReplaceAllString(s, "N")) }
	gotShapes := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		gotShapes[shape(sc.Text())] = true
	}
	for _, l := range readmeBlock(t, "**Close the loop.**") {
		if strings.HasPrefix(l, "$ ") || strings.TrimSpace(l) == "" {
			continue
		}
		if !gotShapes[shape(l)] {
			t.Errorf("README's status line\n\t%s\nnot printed; status printed:\n%s", l, out)
		}
	}

	// 5. The README's fill example pasted as written names an order this
	// run never published: it blocks the policy, and the README's
	// positions snapshot clears the block.
	nc, err := natsConnect(config)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	publishREADME := func(marker string) {
		t.Helper()
		subject, payload := readmePub(t, marker)
		if err := nc.Publish(subject, []byte(payload)); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	statusJSON := func() string {
		b, err := exec.Command(bin, "status", "-config", config, "-policy", "jones-household", "-json").Output()
		if err != nil {
			t.Fatalf("status -json: %v", err)
		}
		return string(b)
	}
	publishREADME("**Send a fill**")
	checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if !strings.Contains(statusJSON(), `"reason": "unknown_order_state"`) {
			return fmt.Errorf("the README's fill did not block jones-household")
		}
		return nil
	})
	publishREADME("To\nrecover")
	checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		if st := statusJSON(); strings.Contains(st, "unknown_order_state") {
			return fmt.Errorf("the README's positions snapshot did not clear the block:\n%s", st)
		}
		return nil
	})
}

// readmePub returns the subject and payload of the first `nats pub` in the
// code block after marker, with $(date -u +%Y-%m-%dT%H:%M:%SZ) evaluated.
func readmePub(t *testing.T, marker string) (string, string) {
	t.Helper()
	cmd := strings.Join(readmeBlock(t, marker), "\n")
	cmd = strings.ReplaceAll(cmd, "\\\n", " ")
	cmd = strings.ReplaceAll(cmd, `'$(date -u +%Y-%m-%dT%H:%M:%SZ)'`, time.Now().UTC().Format(time.RFC3339))
	m := regexp.MustCompile(`nats pub (\S+)\s+'([^']*)'`).FindStringSubmatch(cmd)
	if m == nil {
		t.Fatalf("README: no `nats pub SUBJECT 'JSON'` after %q:\n%s", marker, cmd)
	}
	return m[1], m[2]
}

// natsConnect connects to the NATS of a daemon configuration.
func natsConnect(config string) (*natsgo.Conn, error) {
	_, nc, err := dialFromConfig(config, "", "readme-test")
	return nc, err
}
