// Package natsproxy is a TCP proxy for tests that passes NATS client
// connections on to a server and, when armed, breaks one at the first
// publish on a chosen subject prefix: before any of its bytes reach the
// server, after that message, or after everything read with it. A fault
// then lands exactly while a publish is on the wire.
package natsproxy

import (
	"bytes"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Mode says how much of the publish that trips the proxy reaches the
// server before the connection breaks.
type Mode int

const (
	// ForwardNone forwards the bytes before the publish, none of it.
	ForwardNone Mode = iota + 1
	// ForwardFirst forwards up to the end of the publish, nothing after.
	ForwardFirst
	// ForwardAll forwards everything read with it: it is stored, but its
	// acknowledgement cannot come back.
	ForwardAll
)

// Proxy forwards connections to a NATS server. Its methods are safe for
// concurrent use.
type Proxy struct {
	ln      net.Listener
	target  string
	pattern []byte // "PUB <prefix>", also found inside "HPUB <prefix>"
	tripped chan struct{}

	mu    sync.Mutex
	armed Mode
	held  bool
	conns map[net.Conn]bool
	wg    sync.WaitGroup

	record    string      // Record's subject prefix ("": none)
	published []Published // recorded publishes
	marker    []byte      // AfterReply
	onReply   func()
}

// Published is one message a client published through the proxy.
type Published struct {
	// At is when the proxy read it.
	At      time.Time
	Subject string
	// Reply is its reply subject: empty for a publish that awaits no
	// answer.
	Reply string
}

// Start listens on a random loopback port and forwards each connection
// to target. An armed proxy trips on a publish whose subject starts with
// subjectPrefix. The proxy closes at the end of the test.
func Start(t testing.TB, target, subjectPrefix string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, pattern: []byte("PUB " + subjectPrefix),
		tripped: make(chan struct{}, 1), conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			held := p.held
			p.mu.Unlock()
			if held {
				c.Close() // as if the server were down
				continue
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.pipe(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Arm makes the proxy trip on the next matching publish.
func (p *Proxy) Arm(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = m
}

// Hold refuses new connections while held is true (connections already
// open go on): a client cut off by a trip cannot reconnect, and so cannot
// receive the reply to what it sent before, until Hold(false).
func (p *Proxy) Hold(held bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.held = held
}

// Record makes the proxy record each message a client publishes on a
// subject starting with prefix, from now on (Published).
func (p *Proxy) Record(prefix string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.record = prefix
}

// Published returns the messages recorded so far, in the order read.
func (p *Proxy) Published() []Published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Published(nil), p.published...)
}

// AfterReply makes the proxy call fn once, right after it passed bytes
// from the server containing marker to a client (say, an acknowledgement
// of a message stored in a given stream).
func (p *Proxy) AfterReply(marker []byte, fn func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.marker, p.onReply = marker, fn
}

// replied calls the AfterReply function if chunk, passed to a client,
// holds its marker.
func (p *Proxy) replied(chunk []byte) {
	p.mu.Lock()
	fn := p.onReply
	if fn == nil || !bytes.Contains(chunk, p.marker) {
		p.mu.Unlock()
		return
	}
	p.onReply = nil
	p.mu.Unlock()
	fn()
}

// parse records the complete PUB and HPUB operations at the start of b
// whose subject has the recorded prefix, and returns the rest (an
// operation not read whole yet).
func (p *Proxy) parse(b []byte, at time.Time) []byte {
	for {
		end := bytes.Index(b, []byte("\r\n"))
		if end < 0 {
			return b
		}
		// [H]PUB <subject> [reply] [<header bytes>] <total bytes>\r\n<payload>\r\n
		fields := bytes.Fields(b[:end])
		op := ""
		if len(fields) > 0 {
			op = string(bytes.ToUpper(fields[0]))
		}
		if (op != "PUB" && op != "HPUB") || len(fields) < 3 {
			b = b[end+2:]
			continue
		}
		size, err := strconv.Atoi(string(fields[len(fields)-1]))
		if err != nil {
			b = b[end+2:]
			continue
		}
		if len(b) < end+2+size+2 {
			return b // the payload is still to come
		}
		p.mu.Lock()
		if p.record != "" && bytes.HasPrefix(fields[1], []byte(p.record)) {
			pub := Published{At: at, Subject: string(fields[1])}
			// A reply subject makes one field more than the operation's
			// bare form: PUB <subject> <size>, HPUB <subject> <header size> <size>.
			if bare := map[string]int{"PUB": 3, "HPUB": 4}[op]; len(fields) > bare {
				pub.Reply = string(fields[2])
			}
			p.published = append(p.published, pub)
		}
		p.mu.Unlock()
		b = b[end+2+size+2:]
	}
}

// Tripped receives once after each trip, once the connection is broken
// (a trip not yet taken is not queued twice).
func (p *Proxy) Tripped() <-chan struct{} { return p.tripped }

func (p *Proxy) track(c net.Conn, open bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if open {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

// pipe forwards one client connection until either side closes.
func (p *Proxy) pipe(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return // the server is down: the client retries
	}
	defer server.Close()
	p.track(client, true)
	p.track(server, true)
	defer p.track(client, false)
	defer p.track(server, false)
	// Once cut, nothing more reaches the client: an ack sent for the
	// bytes forwarded with the trip is lost.
	var mu sync.Mutex
	cut := false
	toClient := make(chan struct{})
	p.wg.Add(1)
	go func() { // server to client
		defer p.wg.Done()
		defer close(toClient)
		buf := make([]byte, 64<<10)
		for {
			n, err := server.Read(buf)
			mu.Lock()
			passed := n > 0 && !cut
			if passed {
				if _, werr := client.Write(buf[:n]); werr != nil {
					err = werr
				}
			}
			mu.Unlock()
			if passed {
				p.replied(buf[:n])
			}
			if err != nil {
				client.Close()
				return
			}
		}
	}()
	buf := make([]byte, 64<<10)
	var pending []byte // a publish not read whole yet (Record)
	for {
		n, err := client.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			pending = p.parse(append(pending, chunk...), time.Now())
			if fwd, ok := p.trip(chunk); ok {
				// The connection breaks mid-publish, as it would if the
				// process or the server died right then. The forwarded
				// bytes end with a half-close, so that the server reads
				// them all (a close with unread data could reset the
				// connection and drop them), then closes its side.
				mu.Lock()
				cut = true
				mu.Unlock()
				client.Close()
				_, _ = server.Write(chunk[:fwd])
				if tc, ok := server.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				select {
				case <-toClient:
				case <-time.After(5 * time.Second):
				}
				server.Close()
				select {
				case p.tripped <- struct{}{}:
				default:
				}
				return
			}
			if _, werr := server.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// trip reports whether chunk trips the armed proxy and how many of its
// bytes to forward.
func (p *Proxy) trip(chunk []byte) (forward int, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := bytes.Index(chunk, p.pattern)
	if p.armed == 0 || i < 0 {
		return 0, false
	}
	mode := p.armed
	p.armed = 0
	switch mode {
	case ForwardAll:
		return len(chunk), true
	case ForwardFirst:
		// [H]PUB <subject> [reply] [<header bytes>] <total bytes>\r\n<payload>\r\n
		end := bytes.Index(chunk[i:], []byte("\r\n"))
		if end < 0 {
			return len(chunk), true
		}
		fields := bytes.Fields(chunk[i : i+end])
		total, err := strconv.Atoi(string(fields[len(fields)-1]))
		if err != nil || i+end+2+total+2 > len(chunk) {
			return len(chunk), true
		}
		return i + end + 2 + total + 2, true
	}
	if i > 0 && chunk[i-1] == 'H' {
		i--
	}
	return i, true
}
