// Package inputfile reads the files rebalancerd takes as input (the
// configuration, policies, holdings, price files, secrets and its own
// state) without letting a hostile or mistaken path exhaust memory or hang
// the daemon.
//
// Read refuses anything that is not a regular file once symbolic links are
// followed (a FIFO, a device such as /dev/zero, a socket, a directory) and
// reads at most the limit plus one byte. The file is opened non-blocking
// and its type checked on the open descriptor, so a FIFO put in place
// between a check and the open still cannot block the caller.
package inputfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular is wrapped by Read's error for a path that is not a regular
// file.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is wrapped by Read's error for a file larger than the limit.
var ErrTooLarge = errors.New("file is larger than the limit")

// Read returns the content of the regular file at path, refusing a file
// larger than limit bytes. It never reads more than limit+1 bytes and never
// blocks on a FIFO or a device. Its errors name the path, never the content.
func Read(path string, limit int64) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO without a writer returns at once instead
	// of waiting for one; a regular file ignores the flag.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w (%s)", ErrNotRegular, describe(fi.Mode()))}
	}
	if fi.Size() > limit {
		return nil, tooLarge(path, limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit { // it grew since the Stat
		return nil, tooLarge(path, limit)
	}
	return data, nil
}

func tooLarge(path string, limit int64) error {
	return &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w of %d bytes", ErrTooLarge, limit)}
}

// describe names the type of a file that is not regular.
func describe(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
}

// MaxSecretSize is the limit for secret files: tokens, passwords, API keys
// and NATS credentials are a few hundred bytes.
const MaxSecretSize = 64 << 10
