package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
)

// State is the desired state as it is saved: the config, the revision of
// the last accepted change, and the revision at which each resource
// ("bridges/NAME", "ports/NAME", "acls/NAME"...) last changed (its ETag).
type State struct {
	Version   int               `json:"version"`
	Revision  uint64            `json:"revision"`
	Revisions map[string]uint64 `json:"revisions"`
	Config    Config            `json:"config"`
}

// StateVersion is the format of the state file.
const StateVersion = 1

// StateFile is the state file's name in the state directory.
const StateFile = "state.json"

// Clone returns a deep copy of s.
func (s *State) Clone() *State {
	out := &State{Version: s.Version, Revision: s.Revision, Revisions: make(map[string]uint64, len(s.Revisions)), Config: *s.Config.Clone()}
	for k, v := range s.Revisions {
		out.Revisions[k] = v
	}
	return out
}

// ResourceKey names a resource in State.Revisions.
func ResourceKey(collection, name string) string { return collection + "/" + name }

// resources lists every named resource of c by key.
func resources(c *Config) map[string]any {
	m := map[string]any{}
	for _, b := range c.Bridges {
		m[ResourceKey("bridges", b.Name)] = b
	}
	for _, p := range c.Ports {
		m[ResourceKey("ports", p.Name)] = p
	}
	for _, r := range c.Routers {
		m[ResourceKey("routers", r.Name)] = r
	}
	for _, g := range c.SecurityGroups {
		m[ResourceKey("security_groups", g.Name)] = g
	}
	for _, a := range c.ACLs {
		m[ResourceKey("acls", a.Name)] = a
	}
	return m
}

// SaveState writes st to dir/state.json atomically: a temporary file in
// the same directory, fsync, rename over the old file, fsync the directory.
// A crash at any point leaves either the old or the new file, never a torn
// one.
func SaveState(dir string, st *State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, StateFile+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // gone after a successful rename
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, StateFile)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// LoadState reads dir/state.json. It returns (nil, nil) when there is no
// saved state yet, and removes temporary files a crash left behind.
func LoadState(dir string) (*State, error) {
	if tmps, _ := filepath.Glob(filepath.Join(dir, StateFile+".tmp-*")); len(tmps) > 0 {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st, err := DecodeState(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	return st, nil
}

// DecodeState parses a state file strictly.
func DecodeState(b []byte) (*State, error) {
	var st State
	if err := decodeStrict(strings.NewReader(string(b)), &st); err != nil {
		return nil, err
	}
	if st.Version != StateVersion {
		return nil, fmt.Errorf("state version %d, this vswitchd reads %d", st.Version, StateVersion)
	}
	if st.Revisions == nil {
		st.Revisions = map[string]uint64{}
	}
	return &st, nil
}

// Store holds the desired state and is the only way to change it. Every
// change is validated, diffed against the running state, carried out by
// the reconciler, saved, and only then accepted.
type Store struct {
	mu        sync.Mutex
	st        *State
	reconcile func(target *Config) ([]Action, error)
	save      func(*State) error
}

// NewStore returns a store over st, the state that already runs. reconcile
// takes the running switch to a target config and reports what it did; on
// error it may have done part of the work, and the store reconciles back.
// save persists an accepted state; nil saves nothing.
func NewStore(st *State, reconcile func(*Config) ([]Action, error), save func(*State) error) *Store {
	st = st.Clone()
	if st.Version == 0 {
		st.Version = StateVersion
	}
	if save == nil {
		save = func(*State) error { return nil }
	}
	// A state saved before a kind of resource had revisions: those
	// resources are as old as the state.
	for k := range resources(&st.Config) {
		if st.Revisions[k] == 0 {
			st.Revisions[k] = max(st.Revision, 1)
		}
	}
	return &Store{st: st, reconcile: reconcile, save: save}
}

// Snapshot returns a copy of the current state.
func (s *Store) Snapshot() *State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Clone()
}

// Result is what an accepted update did.
type Result struct {
	Revision uint64   `json:"revision"`
	Actions  []string `json:"actions"`
	State    *State   `json:"-"`
}

// StatusError is an error with the HTTP status it answers with.
type StatusError struct {
	Code    int
	Msg     string
	Details []string
}

func (e *StatusError) Error() string {
	if len(e.Details) == 0 {
		return e.Msg
	}
	return e.Msg + ": " + strings.Join(e.Details, "; ")
}

// Errorf returns a StatusError.
func Errorf(code int, format string, args ...any) *StatusError {
	return &StatusError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Update changes the desired state. fn gets the current state (read only)
// and a copy of its config to change; it returns an error to refuse (a
// failed precondition). The result is filled with defaults, validated as
// a whole, diffed and reconciled, saved, and becomes current. Errors are
// StatusErrors, and on error nothing changed.
func (s *Store) Update(fn func(cur *State, next *Config) error) (*Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := &s.st.Config
	next := cur.Clone()
	if err := fn(s.st, next); err != nil {
		var se *StatusError
		if errors.As(err, &se) {
			return nil, se
		}
		return nil, &StatusError{Code: http.StatusUnprocessableEntity, Msg: err.Error()}
	}
	next.Defaults()
	if err := next.Validate(); err != nil {
		return nil, &StatusError{Code: http.StatusUnprocessableEntity, Msg: "invalid config", Details: splitErrors(err)}
	}
	next.Normalize()
	acts, err := Diff(cur, next)
	if err != nil {
		return nil, &StatusError{Code: http.StatusUnprocessableEntity, Msg: err.Error()}
	}
	if len(acts) == 0 {
		return &Result{Revision: s.st.Revision, Actions: []string{}, State: s.st.Clone()}, nil
	}
	done, err := s.reconcile(next)
	if err != nil {
		s.reconcile(cur) // best effort: back to what ran before
		return nil, &StatusError{Code: http.StatusUnprocessableEntity, Msg: "could not apply the change (rolled back)", Details: []string{err.Error()}}
	}
	ns := s.st.Clone()
	ns.Revision++
	ns.Config = *next
	oldR, newR := resources(cur), resources(next)
	for k := range oldR {
		if _, ok := newR[k]; !ok {
			delete(ns.Revisions, k)
		}
	}
	for k, v := range newR {
		if o, ok := oldR[k]; !ok || !reflect.DeepEqual(o, v) {
			ns.Revisions[k] = ns.Revision
		}
	}
	if err := s.save(ns); err != nil {
		s.reconcile(cur)
		return nil, &StatusError{Code: http.StatusInternalServerError, Msg: "could not save the state (rolled back)", Details: []string{err.Error()}}
	}
	s.st = ns
	r := &Result{Revision: ns.Revision, Actions: make([]string, len(done)), State: ns.Clone()}
	for i, a := range done {
		r.Actions[i] = a.String()
	}
	return r, nil
}

func splitErrors(err error) []string {
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}
