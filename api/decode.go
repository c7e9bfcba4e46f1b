package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/vswitch/vswitch/acl"
)

// NewState returns the first state of a config: revision 1, every resource
// at revision 1.
func NewState(cfg *Config) *State {
	c := cfg.Clone()
	c.Normalize()
	st := &State{Version: StateVersion, Revision: 1, Revisions: map[string]uint64{}, Config: *c}
	for k := range resources(c) {
		st.Revisions[k] = 1
	}
	return st
}

// decodeStrict decodes one JSON value into v: unknown fields, a wrong type
// and trailing data are errors that name the problem.
func decodeStrict(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// jsonError rewords encoding/json's errors to name the field.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &mb):
		return err
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Errorf("%s: want %s, got %s", te.Field, te.Type, te.Value)
		}
		return fmt.Errorf("want %s, got %s", te.Type, te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("bad JSON at byte %d: %v", se.Offset, err)
	case errors.Is(err, io.EOF):
		return errors.New("empty body")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("bad JSON: unexpected end of the body")
	}
	if s := err.Error(); strings.HasPrefix(s, "json: unknown field ") {
		return fmt.Errorf("unknown field %s", strings.TrimPrefix(s, "json: unknown field "))
	}
	return err
}

// decodeBody decodes one resource body strictly.
func decodeBody[T any](b []byte) (T, error) {
	var v T
	err := decodeStrict(bytes.NewReader(b), &v)
	return v, err
}

// DecodePort decodes a port body (the config file's field names).
func DecodePort(b []byte) (PortConfig, error) { return decodeBody[PortConfig](b) }

// DecodeBridge decodes a bridge body.
func DecodeBridge(b []byte) (BridgeConfig, error) { return decodeBody[BridgeConfig](b) }

// DecodeSecurityGroup decodes a security group body.
func DecodeSecurityGroup(b []byte) (acl.SecurityGroup, error) {
	return decodeBody[acl.SecurityGroup](b)
}

// DecodeACL decodes an ACL body.
func DecodeACL(b []byte) (acl.ACL, error) { return decodeBody[acl.ACL](b) }

// DecodeConfig decodes a whole config: JSON strictly, or YAML (viper,
// strict) when yaml is set.
func DecodeConfig(b []byte, yaml bool) (*Config, error) {
	if yaml {
		return Parse(b)
	}
	var c Config
	if err := decodeStrict(bytes.NewReader(b), &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// MergePatch applies an RFC 7396 JSON merge patch to the JSON encoding of
// cur and decodes the result strictly into out.
func MergePatch(cur any, patch []byte, out any) error {
	var p any
	if err := decodeStrict(bytes.NewReader(patch), &p); err != nil {
		return err
	}
	pm, ok := p.(map[string]any)
	if !ok {
		return errors.New("a merge patch is a JSON object")
	}
	b, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return err
	}
	merged, err := json.Marshal(mergePatch(doc, pm))
	if err != nil {
		return err
	}
	return decodeStrict(bytes.NewReader(merged), out)
}

func mergePatch(doc, patch map[string]any) map[string]any {
	if doc == nil {
		doc = map[string]any{}
	}
	for k, v := range patch {
		if v == nil {
			delete(doc, k)
			continue
		}
		if pm, ok := v.(map[string]any); ok {
			dm, _ := doc[k].(map[string]any)
			doc[k] = mergePatch(dm, pm)
			continue
		}
		doc[k] = v
	}
	return doc
}
