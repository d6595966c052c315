// Command packaging builds rebalancerd's Debian package with nFPM
// (github.com/goreleaser/nfpm), from a checkout:
//
//	go run -C packaging . [-out DIR] [-arch amd64] [-version V]
//
// It builds the binary (static, -trimpath, the version stamped in with
// -ldflags), takes the systemd unit from systemd/ with its commands
// pointing at /usr/bin, and packs:
//
//	/usr/bin/rebalancerd
//	/lib/systemd/system/rebalancerd.service
//	/etc/rebalancerd/rebalancerd.yaml        production-shaped (files/rebalancerd.yaml)
//	/etc/rebalancerd/policies/example.yaml   an example household (configs/policies/example.yaml)
//	/etc/rebalancerd/holdings/example.yaml   its holdings
//	/usr/share/doc/rebalancerd/              copyright (LICENSE), README, docs
//
// The configuration is root:rebalancerd, 0640 (directories 0750); the
// maintainer scripts (files/*.sh) create the rebalancerd system user and
// group, and /var/lib/rebalancerd (0700). The version comes from git: the
// tag vX.Y.Z on HEAD gives X.Y.Z, otherwise 0.0.0~git<commit time>.<hash>,
// with +dirty for uncommitted changes.
//
// It is a module of its own so that nFPM and its dependencies stay out of
// the daemon's module graph.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "packaging:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", "dist", "output `directory` (relative to the repository root)")
	arch := flag.String("arch", runtime.GOARCH, "Go `architecture` to build for")
	version := flag.String("version", "", "package `version` (default: from git)")
	flag.Parse()

	root, err := git("rev-parse", "--show-toplevel")
	if err != nil {
		return err
	}
	if *version == "" {
		if *version, err = gitVersion(); err != nil {
			return err
		}
	}
	dist := *out
	if !filepath.IsAbs(dist) {
		dist = filepath.Join(root, dist)
	}
	work, err := os.MkdirTemp("", "rebalancerd-deb-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	commit, err := git("rev-parse", "HEAD")
	if err != nil {
		return err
	}
	const bi = "github.com/rebalancerd/rebalancerd/internal/buildinfo"
	bin := filepath.Join(work, "rebalancerd")
	build := exec.Command("go", "build", "-trimpath", "-o", bin,
		"-ldflags", "-s -w -X "+bi+".version="+*version+" -X "+bi+".commit="+commit, "./cmd/rebalancerd")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+*arch)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}

	unit, err := os.ReadFile(filepath.Join(root, "systemd", "rebalancerd.service"))
	if err != nil {
		return err
	}
	if !bytes.Contains(unit, []byte("/usr/local/bin/rebalancerd ")) {
		return fmt.Errorf("systemd/rebalancerd.service does not run /usr/local/bin/rebalancerd: update packaging")
	}
	unit = bytes.ReplaceAll(unit, []byte("/usr/local/bin/rebalancerd"), []byte("/usr/bin/rebalancerd"))
	unitFile := filepath.Join(work, "rebalancerd.service")
	if err := os.WriteFile(unitFile, unit, 0o644); err != nil {
		return err
	}

	r := func(p string) string { return filepath.Join(root, p) }
	conf := func(src, dst string) *files.Content {
		return &files.Content{Source: src, Destination: dst, Type: files.TypeConfigNoReplace,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "rebalancerd", Mode: 0o640}}
	}
	dir := func(dst string, mode os.FileMode, owner string) *files.Content {
		return &files.Content{Destination: dst, Type: files.TypeDir,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: owner, Mode: mode}}
	}
	doc := func(src, dst string) *files.Content {
		return &files.Content{Source: src, Destination: "/usr/share/doc/rebalancerd/" + dst, Type: files.TypeFile,
			FileInfo: &files.ContentFileInfo{Mode: 0o644}}
	}
	contents := files.Contents{
		{Source: bin, Destination: "/usr/bin/rebalancerd", FileInfo: &files.ContentFileInfo{Mode: 0o755}},
		{Source: unitFile, Destination: "/lib/systemd/system/rebalancerd.service", FileInfo: &files.ContentFileInfo{Mode: 0o644}},
		dir("/etc/rebalancerd", 0o750, "rebalancerd"),
		dir("/etc/rebalancerd/policies", 0o750, "rebalancerd"),
		dir("/etc/rebalancerd/holdings", 0o750, "rebalancerd"),
		conf(r("packaging/files/rebalancerd.yaml"), "/etc/rebalancerd/rebalancerd.yaml"),
		conf(r("configs/policies/example.yaml"), "/etc/rebalancerd/policies/example.yaml"),
		conf(r("configs/holdings/example.yaml"), "/etc/rebalancerd/holdings/example.yaml"),
		doc(r("LICENSE"), "copyright"),
		doc(r("README.md"), "README.md"),
	}
	for _, d := range []string{"CONFIG.md", "EVENTS.md", "OPERATIONS.md", "SECURITY.md", "SYSTEMD.md"} {
		contents = append(contents, doc(r("docs/"+d), d))
	}
	info := &nfpm.Info{
		Name:          "rebalancerd",
		Arch:          *arch,
		Platform:      "linux",
		Version:       *version,
		VersionSchema: "none",
		Section:       "misc",
		Priority:      "optional",
		Maintainer:    "rebalancerd maintainers <rebalancerd@users.noreply.github.com>",
		Description: "Keeps investment portfolios on the targets of their policy\n" +
			"rebalancerd reads Investment Policy Statements, polls prices, computes drift\n" +
			"and publishes the orders that rebalance each household on NATS JetStream.",
		Homepage: "https://github.com/rebalancerd/rebalancerd",
		License:  "Apache-2.0",
		MTime:    commitTime(),
		Overridables: nfpm.Overridables{
			// Pre-Depends: the preinst creates the service's user with
			// adduser (or useradd), which a plain Depends does not
			// guarantee is installed when the preinst runs.
			Deb:      nfpm.Deb{Predepends: []string{"adduser | passwd"}},
			Contents: contents,
			Scripts: nfpm.Scripts{
				PreInstall:  r("packaging/files/preinstall.sh"),
				PostInstall: r("packaging/files/postinstall.sh"),
				PreRemove:   r("packaging/files/preremove.sh"),
			},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return fmt.Errorf("nfpm: %w", err)
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dist, 0o755); err != nil {
		return err
	}
	target := filepath.Join(dist, pkg.ConventionalFileName(info))
	f, err := os.Create(target)
	if err != nil {
		return err
	}
	if err := pkg.Package(info, f); err != nil {
		f.Close()
		return fmt.Errorf("nfpm deb: %w", err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println(target)
	return nil
}

// git runs git in the repository and returns its trimmed output.
func git(args ...string) (string, error) {
	out, err := exec.Command("git", args...).Output()
	if err != nil {
		return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out)), nil
}

var release = regexp.MustCompile(`^v(\d+\.\d+\.\d+)$`)

// gitVersion is the Debian version of HEAD (see the package comment).
func gitVersion() (string, error) {
	v := ""
	if tag, err := git("describe", "--tags", "--exact-match", "HEAD"); err == nil {
		if m := release.FindStringSubmatch(tag); m != nil {
			v = m[1]
		}
	}
	if v == "" {
		hash, err := git("rev-parse", "--short=12", "HEAD")
		if err != nil {
			return "", err
		}
		v = "0.0.0~git" + commitTime().Format("20060102150405") + "." + hash
	}
	if status, err := git("status", "--porcelain", "--untracked-files=no"); err == nil && status != "" {
		v += "+dirty"
	}
	return v, nil
}

// commitTime is HEAD's commit time (UTC), for reproducible file times;
// the Unix epoch when git cannot say.
func commitTime() time.Time {
	s, err := git("log", "-1", "--format=%ct", "HEAD")
	if err != nil {
		return time.Unix(0, 0).UTC()
	}
	var sec int64
	fmt.Sscan(s, &sec)
	return time.Unix(sec, 0).UTC()
}
