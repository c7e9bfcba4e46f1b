package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
)

// QueueSpec is a port's `queues`: a number, or for an afxdp port a list of
// NIC queue ids (`queues: [0, 2]`). A vhostuser port's number is how many
// queue pairs it offers; an afxdp port's number N means queues 0..N-1, and
// 0 (or no `queues`) every queue of the device.
type QueueSpec struct {
	N   int   // the number form
	IDs []int // the list form; nil when the number form is used
}

// QueueCount is the number form n.
func QueueCount(n int) QueueSpec { return QueueSpec{N: n} }

// QueueList is the list form.
func QueueList(ids ...int) QueueSpec { return QueueSpec{IDs: append([]int{}, ids...)} }

// IsList reports whether q is the list form.
func (q QueueSpec) IsList() bool { return q.IDs != nil }

// IsZero reports whether q was left out (json omitzero).
func (q QueueSpec) IsZero() bool { return q.N == 0 && q.IDs == nil }

// Equal reports whether q and o are the same spec in the same form.
func (q QueueSpec) Equal(o QueueSpec) bool {
	return q.N == o.N && (q.IDs == nil) == (o.IDs == nil) && slices.Equal(q.IDs, o.IDs)
}

// Count is the number of queues q names: the list's length or N.
func (q QueueSpec) Count() int {
	if q.IsList() {
		return len(q.IDs)
	}
	return q.N
}

// Queues returns the queue ids q names, nil meaning every queue.
func (q QueueSpec) Queues() []int {
	if q.IsList() {
		return slices.Clone(q.IDs)
	}
	var ids []int
	for i := 0; i < q.N; i++ {
		ids = append(ids, i)
	}
	return ids
}

func (q QueueSpec) String() string {
	if !q.IsList() {
		return strconv.Itoa(q.N)
	}
	s := make([]string, len(q.IDs))
	for i, id := range q.IDs {
		s[i] = strconv.Itoa(id)
	}
	return "[" + strings.Join(s, ",") + "]"
}

// ParseQueueSpec reads "N", "a,b,c" or "[a,b,c]" (the command line's form).
func ParseQueueSpec(s string) (QueueSpec, error) {
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, ",[") {
		n, err := strconv.Atoi(s)
		if err != nil {
			return QueueSpec{}, fmt.Errorf("%q is not a number or a list of queue ids", s)
		}
		return QueueCount(n), nil
	}
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	ids := []int{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil {
			return QueueSpec{}, fmt.Errorf("%q is not a queue id", f)
		}
		ids = append(ids, n)
	}
	return QueueSpec{IDs: ids}, nil
}

// MarshalJSON writes the number or the list.
func (q QueueSpec) MarshalJSON() ([]byte, error) {
	if q.IsList() {
		return json.Marshal(q.IDs)
	}
	return json.Marshal(q.N)
}

// UnmarshalJSON reads a number or a list of numbers.
func (q *QueueSpec) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '[' {
		ids := []int{}
		if err := json.Unmarshal(b, &ids); err != nil {
			return &json.UnmarshalTypeError{Value: "array of non-integers", Type: reflect.TypeFor[[]int]()}
		}
		*q = QueueSpec{IDs: ids}
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return &json.UnmarshalTypeError{Value: string(b), Type: reflect.TypeFor[int]()}
	}
	*q = QueueSpec{N: n}
	return nil
}

// JSONSchema is q's OpenAPI schema.
func (QueueSpec) JSONSchema() map[string]any {
	return map[string]any{"oneOf": []any{
		map[string]any{"type": "integer"},
		map[string]any{"type": "array", "items": map[string]any{"type": "integer"}},
	}}
}

var queueSpecType = reflect.TypeFor[QueueSpec]()

// queueSpecHook lets viper decode `queues: 2` and `queues: [0, 1]`.
func queueSpecHook(from, to reflect.Type, data any) (any, error) {
	if to != queueSpecType {
		return data, nil
	}
	switch v := data.(type) {
	case int:
		return QueueCount(v), nil
	case int64:
		return QueueCount(int(v)), nil
	case uint64:
		if v > 1<<31 {
			return nil, fmt.Errorf("queues: %d is too large", v)
		}
		return QueueCount(int(v)), nil
	case []any:
		ids := make([]int, 0, len(v))
		for _, e := range v {
			switch n := e.(type) {
			case int:
				ids = append(ids, n)
			case int64:
				ids = append(ids, int(n))
			case uint64:
				if n > 1<<31 {
					return nil, fmt.Errorf("queues: %d is too large", n)
				}
				ids = append(ids, int(n))
			default:
				return nil, fmt.Errorf("queues: %v is not a queue id", e)
			}
		}
		return QueueSpec{IDs: ids}, nil
	case QueueSpec:
		return v, nil
	}
	return nil, fmt.Errorf("queues: want a number or a list of queue ids, got %T", data)
}

var _ mapstructure.DecodeHookFuncType = queueSpecHook

// Set parses s as ParseQueueSpec does (a command-line flag's value).
func (q *QueueSpec) Set(s string) error {
	v, err := ParseQueueSpec(s)
	if err != nil {
		return err
	}
	*q = v
	return nil
}

// Type names the flag's value type.
func (*QueueSpec) Type() string { return "N|ID,ID,..." }
