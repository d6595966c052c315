// Package households reads a directory of household files on the models
// of another (policy.ParseModel, policy.ParseHousehold): every model once,
// then every household, in parallel, with the holdings file each names.
// A problem in one household's files concerns that household only, and a
// problem in a model the households that name it: Read reports each with
// its file and line and returns the others ready to run.
package households

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rebalancerd/rebalancerd/internal/engine"
	"github.com/rebalancerd/rebalancerd/internal/inputfile"
	"github.com/rebalancerd/rebalancerd/internal/policy"
	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// Household is one household file as read.
type Household struct {
	File string
	// Name is the household's name, when the file gave one.
	Name string
	// Loaded is the household ready to run when Err is nil.
	Loaded engine.Loaded
	// Err lists the problems of the household's files (strictyaml.Errors)
	// or of its model.
	Err error
}

// Result is what Read found.
type Result struct {
	// Households are every household file, sorted by file name.
	Households []Household
	// Models are the valid models by name; ModelErrs the problems of the
	// others, with their files and lines.
	Models    policy.Models
	ModelErrs strictyaml.Errors
	// Dirs are the directories whose changes may change the result: the
	// two directories and those of the holdings files.
	Dirs []string
}

// Bad counts the households with a problem.
func (r *Result) Bad() int {
	n := 0
	for i := range r.Households {
		if r.Households[i].Err != nil {
			n++
		}
	}
	return n
}

// Read reads every model in modelsDir and every household in
// householdsDir: the *.yaml and *.yml files, hidden ones left out. The
// error is for a directory that cannot be listed; problems of files are
// in the result. loc is the host's zone, the last fallback of each
// household's (policy.Policy.LocalZone).
//
// cache, when not nil, keeps what this reading composed for the next one,
// which parses again only the files whose bytes or model changed.
func Read(modelsDir, householdsDir string, loc *time.Location, cache *Cache) (*Result, error) {
	modelFiles, err := yamlFiles(modelsDir)
	if err != nil {
		return nil, err
	}
	files, err := yamlFiles(householdsDir)
	if err != nil {
		return nil, err
	}
	res := &Result{Models: policy.Models{}}
	broken := map[string]string{} // model name -> file, of invalid models
	defined := map[string]string{}
	for _, file := range modelFiles {
		m, err := readModel(file)
		if err != nil {
			res.ModelErrs = append(res.ModelErrs, strictyaml.AsErrors(err)...)
			var me *policy.ModelError
			if errors.As(err, &me) && me.Name != "" {
				broken[me.Name] = file
			}
			continue
		}
		if prev, ok := defined[m.Name]; ok {
			res.ModelErrs = append(res.ModelErrs, &strictyaml.Error{File: file, Line: 1, Field: "model",
				Msg: fmt.Sprintf("model %q is also defined in %s", m.Name, prev)})
			broken[m.Name] = file
			continue
		}
		defined[m.Name] = file
		res.Models[m.Name] = m
	}
	for name := range broken {
		delete(res.Models, name) // a name defined twice is broken too
	}
	res.Households = make([]Household, len(files))
	var last map[string]*entry
	if cache != nil {
		last = cache.entries // read-only while the workers run
	}
	kept := make([]*entry, len(files))
	workers := min(runtime.GOMAXPROCS(0), len(files))
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				res.Households[i], kept[i] = readHousehold(files[i], res.Models, broken, loc, last[files[i]])
			}
		})
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	if cache != nil {
		cache.entries = make(map[string]*entry, len(files))
		for i, e := range kept {
			if e != nil {
				cache.entries[files[i]] = e
			}
		}
	}
	dirs := map[string]bool{modelsDir: true, householdsDir: true}
	names := map[string]string{}
	for i := range res.Households {
		h := &res.Households[i]
		if h.Loaded.Holdings != nil {
			dirs[filepath.Dir(h.Loaded.Holdings.File)] = true
		}
		if h.Err != nil || h.Name == "" {
			continue
		}
		if prev, ok := names[h.Name]; ok {
			h.Err = strictyaml.Errors{{File: h.File, Line: 1, Field: "household",
				Msg: fmt.Sprintf("household %q is also defined in %s", h.Name, prev)}}
			continue
		}
		names[h.Name] = h.File
	}
	for d := range dirs {
		res.Dirs = append(res.Dirs, d)
	}
	sort.Strings(res.Dirs)
	return res, nil
}

// yamlFiles lists the YAML files of dir, sorted.
func yamlFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) {
			continue
		}
		out = append(out, filepath.Join(dir, n))
	}
	return out, nil // os.ReadDir sorts by name
}

func readModel(file string) (*policy.Model, error) {
	data, err := inputfile.Read(file, strictyaml.MaxFileSize)
	if err != nil {
		return nil, &strictyaml.Error{File: file, Msg: err.Error()}
	}
	return policy.ParseModel(file, data)
}

// Cache keeps, by household file, what a Read composed, for the next
// Read. A household whose file, model and holdings file have the same
// bytes is not parsed again: at 100,000 households, a reload for one
// edited file costs the reading of the files, not their parsing. It is
// not safe for concurrent Reads.
type Cache struct {
	entries map[string]*entry
}

// entry is one household as composed, with the sums of what it came from.
type entry struct {
	sum, holdingsSum [sha256.Size]byte
	model, version   string // the model's name and version
	loc              *time.Location
	out              Household
}

// readHousehold reads one household file, composes it with its model and
// reads its holdings; last is what the previous Read made of the file
// (nil for nothing). It returns the household and, when it is valid, the
// entry to keep.
func readHousehold(file string, models policy.Models, broken map[string]string, loc *time.Location, last *entry) (Household, *entry) {
	out := Household{File: file}
	data, err := inputfile.Read(file, strictyaml.MaxFileSize)
	if err != nil {
		out.Err = &strictyaml.Error{File: file, Msg: err.Error()}
		return out, nil
	}
	e := &entry{sum: sha256.Sum256(data), loc: loc}
	if last != nil && last.sum == e.sum && last.loc == loc && models[last.model] != nil && models[last.model].Version == last.version {
		holdings := last.out.Loaded.Holdings.File
		if hdata, err := inputfile.Read(holdings, strictyaml.MaxFileSize); err == nil && sha256.Sum256(hdata) == last.holdingsSum {
			return last.out, last
		}
	}
	h, err := policy.ParseHousehold(file, data)
	if err != nil {
		out.Err = err
		return out, nil
	}
	out.Name = h.Name
	if mf, ok := broken[h.Model]; ok {
		out.Err = strictyaml.Errors{{File: file, Line: h.ModelLine, Field: "model",
			Msg: fmt.Sprintf("model %q (%s) is invalid", h.Model, mf)}}
		return out, nil
	}
	p, err := models.Compose(h)
	if err != nil {
		out.Err = err
		return out, nil
	}
	p.LocalZone = loc
	hdata, err := inputfile.Read(h.Holdings, strictyaml.MaxFileSize)
	if err != nil {
		out.Err = &strictyaml.Error{File: h.Holdings, Msg: fmt.Sprintf("holdings of household %s: %v", h.Name, err)}
		return out, nil
	}
	if out.Loaded, out.Err = engine.HoldingsFor(p, h.Holdings, hdata); out.Err != nil {
		return out, nil
	}
	e.holdingsSum, e.model, e.version, e.out = sha256.Sum256(hdata), h.Model, models[h.Model].Version, out
	return out, e
}
