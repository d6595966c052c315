package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/rebalancerd/rebalancerd/internal/strictyaml"
)

// Models and households. An advisor runs a few dozen models for thousands
// of households: a model file is a policy without the household's parts
// (its name is under `model:`), and a household file names a model and
// adds its accounts, investor, contributions and holdings, and may replace
// whole sections of the model (Overridable). The household's effective
// policy is what a policy file holding the model's fields with the
// household's in their place would be; it is compiled by the same code,
// each problem naming the file and line it is in.

// modelFields are the top-level fields of a model file.
var modelFields = []string{"model", "currency", "targets", "bands", "rebalance", "prices", "limits", "instruments",
	"glide_path", "glide_bands", "tilts", "tax", "asset_location", "correlation", "phase_in"}

// householdOwn are the top-level fields only a household file has.
var householdOwn = []string{"household", "model", "holdings", "accounts", "investor", "contributions"}

// Overridable lists the sections of a model a household file may replace,
// each as a whole: a household with `bands:` has its bands, not the
// model's, and none of the model's per-sleeve bands.
var Overridable = []string{"bands", "rebalance", "limits", "tax", "asset_location"}

// householdFields are the top-level fields of a household file.
var householdFields = append(append([]string{}, householdOwn...), Overridable...)

// Model is a parsed and validated model: the fields it gives every
// household that names it. It is immutable and safe for concurrent use;
// Compose reads its nodes, parsed once, for each household.
type Model struct {
	Name string
	File string
	// Version identifies the model's content (16 hex digits of the
	// SHA-256 of its bytes); it is part of every household's version.
	Version string
	// Policy is the model compiled on its own (no accounts, no investor):
	// its sleeves, instruments and rules, for summaries.
	Policy *Policy

	sum  [sha256.Size]byte
	memo *memo
	r    strictyaml.Reader // the file's reader, without problems
	part part
}

// ParseModel reads and validates a model file. A problem that only a
// household can show (an account that asset_location names, a glide path
// without the investor's birth date) is reported by Compose.
func ParseModel(file string, data []byte) (*Model, error) {
	r := &strictyaml.Reader{File: file}
	root := r.Parse(data)
	if root == nil {
		return nil, &ModelError{File: file, Errs: strictyaml.AsErrors(r.Errs.Err())}
	}
	m := &Model{File: file, sum: sha256.Sum256(data)}
	m.Version = hex.EncodeToString(m.sum[:8])
	whole := &part{r: r, root: root, f: r.Object(root, "", modelFields...)}
	c := compiler{r: r, p: newPolicy(file, m.Version), owner: func(string) *part { return whole }, modelOnly: true,
		memo: &memo{}}
	c.compile("model")
	if err := r.Errs.Err(); err != nil {
		return nil, &ModelError{Name: c.p.Name, File: file, Errs: strictyaml.AsErrors(err)}
	}
	m.Name, m.Policy, m.memo = c.p.Name, c.p, c.memo
	m.r = *r
	m.part = part{root: root, f: whole.f}
	return m, nil
}

// ModelError is the error of a model file that does not validate; Name is
// the model's name when it could be read, so that its households can say
// which of their models is broken.
type ModelError struct {
	Name string
	File string
	Errs strictyaml.Errors
}

// Error lists the problems, one per line.
func (e *ModelError) Error() string { return e.Errs.Error() }

// Unwrap returns the problems (strictyaml.AsErrors finds them).
func (e *ModelError) Unwrap() error { return e.Errs }

// Household is a parsed household file, to be composed with its model.
type Household struct {
	// Name names the household's effective policy (NATS subjects, state).
	Name string
	// Model is the name of the model it follows.
	Model string
	// Holdings is the holdings file that seeds the ledger, relative paths
	// taken from the household file's directory.
	Holdings string
	File     string
	// ModelLine is the line of the model field.
	ModelLine int

	data []byte
	r    strictyaml.Reader
	part part
}

// ParseHousehold reads a household file: its name, model and holdings and
// the shape of its fields. The fields are checked against the model by
// Compose.
func ParseHousehold(file string, data []byte) (*Household, error) {
	r := &strictyaml.Reader{File: file}
	root := r.Parse(data)
	if root == nil {
		return nil, r.Errs.Err()
	}
	// The model's own fields are refused by name, not as unknown.
	known := append(append([]string{}, householdFields...), modelOnlyFields()...)
	f := r.Object(root, "", known...)
	for _, e := range r.Entries(root, "") {
		if _, ok := f[e.Key]; ok && !slices.Contains(householdFields, e.Key) {
			r.Errorf(e.KeyNode, e.Key, "set by the model: a household may replace only %s", strings.Join(Overridable, ", "))
			delete(f, e.Key)
		}
	}
	h := &Household{File: file, data: data}
	str := func(key string) string {
		n, ok := f[key]
		if !ok {
			if plainMapping(root) {
				r.Errorf(root, key, "required field is missing")
			}
			return ""
		}
		s, _ := r.String(n, key)
		if s != "" && key != "holdings" && !identifier.MatchString(s) {
			r.Errorf(n, key, "%q: use letters, digits, '-' and '_' only", s)
		}
		return s
	}
	h.Name, h.Model = str("household"), str("model")
	if n, ok := f["model"]; ok {
		h.ModelLine = n.Line
	}
	if s := str("holdings"); s != "" {
		if !filepath.IsAbs(s) {
			s = filepath.Join(filepath.Dir(file), s)
		}
		h.Holdings = filepath.Clean(s)
	}
	if err := r.Errs.Err(); err != nil {
		return nil, err
	}
	h.r = *r
	h.part = part{root: root, f: f}
	return h, nil
}

// modelOnlyFields are the model's fields a household may not replace.
func modelOnlyFields() []string {
	var out []string
	for _, k := range modelFields {
		if k != "model" && !slices.Contains(Overridable, k) {
			out = append(out, k)
		}
	}
	return out
}

// Compose returns the effective policy of household h on model m: the
// model's fields with the household's accounts, investor, contributions
// and overrides. Its name and file are the household's; its version
// changes when either file does, so that editing a model re-plans every
// household on it (order ids derive from the version). A problem is
// reported in the file it is in; one in the model that only this
// household shows (an account the model's asset_location names that the
// household lacks) names the household too.
func Compose(m *Model, h *Household) (*Policy, error) {
	mr, hr := m.r, h.r // copies: Compose runs concurrently for many households
	mr.Errs, hr.Errs = nil, nil
	if h.Model != m.Name {
		hr.Errorf(h.part.f["model"], "model", "names model %q, composed with %q", h.Model, m.Name)
		return nil, hr.Errs.Err()
	}
	hasher := sha256.New()
	hasher.Write(m.sum[:])
	hasher.Write(h.data)
	version := hex.EncodeToString(hasher.Sum(nil)[:8])
	p := newPolicy(h.File, version)
	p.Model, p.ModelVersion = m.Name, m.Version
	model := &part{r: &mr, root: m.part.root, f: m.part.f}
	household := &part{r: &hr, root: h.part.root, f: h.part.f}
	// The sections of the model a household cannot change are taken as
	// the model compiled them: parsed once, one copy in memory for all its
	// households (a Policy is immutable; WithLocals and WithHalfWidths
	// copy the sleeves they change).
	c := compiler{r: &hr, p: p, base: m.Policy, memo: m.memo, owner: func(key string) *part {
		if _, ok := household.f[key]; ok || slices.Contains(householdOwn, key) {
			return household
		}
		return model
	}}
	c.compile("household")
	for _, e := range mr.Errs {
		e.Msg += " (for household " + h.File + ")"
	}
	errs := append(hr.Errs, mr.Errs...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// Models are the models an instance knows, by name.
type Models map[string]*Model

// Compose composes h with the model it names, and reports a model that is
// not there at the household's model field.
func (ms Models) Compose(h *Household) (*Policy, error) {
	if m, ok := ms[h.Model]; ok {
		return Compose(m, h)
	}
	names := make([]string, 0, len(ms))
	for name := range ms {
		names = append(names, name)
	}
	slices.Sort(names)
	if len(names) > maxKnownListed {
		names = append(names[:maxKnownListed], fmt.Sprintf("and %d more", len(ms)-maxKnownListed))
	}
	r := h.r
	r.Errs = nil
	r.Errorf(h.part.f["model"], "model", "no model %q (known: %s)", h.Model, strings.Join(names, ", "))
	return nil, r.Errs.Err()
}

// memo shares what the households of one model parse alike: time zones and
// cron schedules. Each time.LoadLocation reads the zone database and
// returns a new 4 KiB Location; 100,000 households in New York need one.
// A Location and a cron.Schedule are immutable once made. Safe for
// concurrent use; a nil memo keeps nothing.
type memo struct {
	zones     sync.Map // name -> *time.Location
	schedules sync.Map // spec -> cron.Schedule
}

func (m *memo) zone(name string) (*time.Location, bool) {
	if m == nil {
		return nil, false
	}
	v, ok := m.zones.Load(name)
	if !ok {
		return nil, false
	}
	return v.(*time.Location), true
}

func (m *memo) keepZone(name string, loc *time.Location) {
	if m != nil && name != "Local" {
		m.zones.Store(name, loc)
	}
}

func (m *memo) schedule(spec string) (cron.Schedule, bool) {
	if m == nil {
		return nil, false
	}
	v, ok := m.schedules.Load(spec)
	if !ok {
		return nil, false
	}
	return v.(cron.Schedule), true
}

func (m *memo) keepSchedule(spec string, s cron.Schedule) {
	if m != nil {
		m.schedules.Store(spec, s)
	}
}
