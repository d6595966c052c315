package nats

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretFilesMustBePrivate: a secret file that group or others may
// read is refused, naming the file and the fix, before any connection.
func TestSecretFilesMustBePrivate(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("s3cret\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask-proof
			t.Fatal(err)
		}
		return p
	}
	open := write("open", 0o644)
	private := write("private", 0o600)
	for _, tt := range []struct {
		name string
		cfg  ConnConfig
		bad  bool
	}{
		{"token readable by others", ConnConfig{TokenFile: open}, true},
		{"password readable by others", ConnConfig{User: "u", PasswordFile: open}, true},
		{"nkey seed readable by others", ConnConfig{NKeySeedFile: open}, true},
		{"creds readable by others", ConnConfig{CredsFile: open}, true},
		{"TLS key readable by others", ConnConfig{CertFile: private, KeyFile: open}, true},
		{"private token", ConnConfig{TokenFile: private}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.cfg.options()
			if !tt.bad {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), open+" is accessible by group or others (mode 0644): run chmod 600") {
				t.Fatalf("error %v", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatal("the error shows the secret")
			}
		})
	}
}
