// Package households reads a directory of household files on the models
// of another (policy.ParseModel, policy.ParseHousehold): every model once,
// then every household, in parallel, with the holdings file each names.
// A problem in one household's files concerns that household only, and a
// problem in a model the households that name it: Read reports each with
// its file and line and returns the others ready to run.
package households

import (
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
func Read(modelsDir, householdsDir string, loc *time.Location) (*Result, error) {
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
	workers := min(runtime.GOMAXPROCS(0), len(files))
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				res.Households[i] = readHousehold(files[i], res.Models, broken, loc)
			}
		})
	}
	for i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
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

// readHousehold reads one household file, composes it with its model and
// reads its holdings.
func readHousehold(file string, models policy.Models, broken map[string]string, loc *time.Location) Household {
	out := Household{File: file}
	data, err := inputfile.Read(file, strictyaml.MaxFileSize)
	if err != nil {
		out.Err = &strictyaml.Error{File: file, Msg: err.Error()}
		return out
	}
	h, err := policy.ParseHousehold(file, data)
	if err != nil {
		out.Err = err
		return out
	}
	out.Name = h.Name
	if mf, ok := broken[h.Model]; ok {
		out.Err = strictyaml.Errors{{File: file, Line: h.ModelLine, Field: "model",
			Msg: fmt.Sprintf("model %q (%s) is invalid", h.Model, mf)}}
		return out
	}
	p, err := models.Compose(h)
	if err != nil {
		out.Err = err
		return out
	}
	p.LocalZone = loc
	out.Loaded, out.Err = engine.ReadHoldings(p, h.Holdings)
	return out
}
