package api

import (
	"net/http"
	"reflect"
	"strconv"
	"strings"
)

// route is one operation: the mux serves it and the OpenAPI document
// describes it, both from this table.
type route struct {
	Method, Path, Summary string
	Query                 []queryParam // query parameters it reads
	Request               any          // body type, nil if none
	Response              any          // 2xx body type, nil if none
	Codes                 []int        // every status it answers with
	handle                http.HandlerFunc
}

// queryParam is an optional query parameter of a route.
type queryParam struct {
	Name, Type, Description string // Type: string or integer
}

func (h *handler) routes() []route {
	rs := []route{
		{Method: "GET", Path: "/v1/ports", Summary: "List ports with status and counters", Response: []PortStatus{}, Codes: []int{200}, handle: h.getPorts},
		{Method: "GET", Path: "/v1/ports/{name}", Summary: "One port with status, counters and config (ETag: its revision)", Response: PortStatus{}, Codes: []int{200, 404}, handle: h.getPort},
		{Method: "GET", Path: "/v1/openapi.json", Summary: "This document", Codes: []int{200}, handle: h.getOpenAPI},
	}
	if h.Metrics != nil {
		rs = append(rs, route{Method: "GET", Path: "/metrics", Summary: "Prometheus metrics (text format)", Codes: []int{200}, handle: h.Metrics.ServeHTTP})
	}
	if h.Tracer != nil {
		rs = append(rs, route{Method: "POST", Path: "/v1/trace", Summary: "Dry-run a described packet through the pipeline: each stage's decision and the output ports",
			Request: TraceRequest{}, Response: TraceResult{}, Codes: []int{200, 400, 404, 413, 422}, handle: h.postTrace})
	}
	rs = append(rs, h.inspectRoutes()...)
	rs = append(rs, h.workerRoutes()...)
	rs = append(rs, h.neighborRoutes()...)
	rs = append(rs, h.conntrackRoutes()...)
	if h.liveTracer() != nil {
		rs = append(rs,
			route{Method: "POST", Path: "/v1/ports/{name}/trace", Summary: "Arm a live trace: capture the next count (1..1000) packets received on the port, replacing any capture there",
				Request: LiveTraceRequest{}, Response: LiveTrace{}, Codes: []int{201, 400, 404, 413, 422}, handle: h.postLiveTrace},
			route{Method: "GET", Path: "/v1/ports/{name}/trace", Summary: "The packets a live trace captured: headers, each stage's decision, outputs",
				Response: LiveTrace{}, Codes: []int{200, 404}, handle: h.getLiveTrace},
			route{Method: "DELETE", Path: "/v1/ports/{name}/trace", Summary: "Disarm a live trace and forget what it captured",
				Codes: []int{204, 404}, handle: h.deleteLiveTrace})
	}
	if h.Store == nil {
		return rs
	}
	write := []int{200, 201, 400, 404, 409, 413, 422}
	rs = append(rs,
		route{Method: "POST", Path: "/v1/ports", Summary: "Create a port (409 if it exists)", Request: PortConfig{}, Response: PortConfig{}, Codes: write,
			handle: func(w http.ResponseWriter, r *http.Request) { ports.write(h, w, r, http.MethodPost) }},
		route{Method: "PUT", Path: "/v1/ports/{name}", Summary: "Create or replace a port (If-Match: revision)", Request: PortConfig{}, Response: PortConfig{}, Codes: write,
			handle: func(w http.ResponseWriter, r *http.Request) { ports.write(h, w, r, http.MethodPut) }},
		route{Method: "PATCH", Path: "/v1/ports/{name}", Summary: "Change fields of a port (JSON merge patch; If-Match: revision)", Request: PortConfig{}, Response: PortConfig{}, Codes: write,
			handle: func(w http.ResponseWriter, r *http.Request) { ports.write(h, w, r, http.MethodPatch) }},
		route{Method: "DELETE", Path: "/v1/ports/{name}", Summary: "Delete a port (If-Match: revision)", Codes: []int{204, 400, 404, 409, 422},
			handle: func(w http.ResponseWriter, r *http.Request) { ports.delete(h, w, r) }},
		route{Method: "GET", Path: "/v1/bridges", Summary: "List bridges", Response: []BridgeStatus{}, Codes: []int{200}, handle: h.getBridges},
		route{Method: "POST", Path: "/v1/bridges", Summary: "Create a bridge (409 if it exists)", Request: BridgeConfig{}, Response: BridgeConfig{}, Codes: write,
			handle: func(w http.ResponseWriter, r *http.Request) { bridges.write(h, w, r, http.MethodPost) }},
		route{Method: "GET", Path: "/v1/bridges/{name}", Summary: "One bridge (ETag: its revision)", Response: BridgeStatus{}, Codes: []int{200, 404}, handle: h.getBridge},
		route{Method: "PUT", Path: "/v1/bridges/{name}", Summary: "Create or replace a bridge (If-Match: revision)", Request: BridgeConfig{}, Response: BridgeConfig{}, Codes: write,
			handle: func(w http.ResponseWriter, r *http.Request) { bridges.write(h, w, r, http.MethodPut) }},
		route{Method: "PATCH", Path: "/v1/bridges/{name}", Summary: "Change fields of a bridge (JSON merge patch)", Request: BridgeConfig{}, Response: BridgeConfig{}, Codes: write,
			handle: func(w http.ResponseWriter, r *http.Request) { bridges.write(h, w, r, http.MethodPatch) }},
		route{Method: "DELETE", Path: "/v1/bridges/{name}", Summary: "Delete a bridge that has no ports", Codes: []int{204, 400, 404, 409, 422},
			handle: func(w http.ResponseWriter, r *http.Request) { bridges.delete(h, w, r) }},
		route{Method: "GET", Path: "/v1/config", Summary: "The whole desired config (ETag: the global revision)", Response: Config{}, Codes: []int{200}, handle: h.getConfig},
		route{Method: "PUT", Path: "/v1/config", Summary: "Replace the desired config (JSON, or YAML with Content-Type application/yaml); sections left out keep their values", Request: Config{}, Response: Result{}, Codes: []int{200, 400, 409, 413, 422},
			handle: h.putConfig},
	)
	return append(rs, h.filterRoutes()...)
}

func (h *handler) getOpenAPI(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.OpenAPI())
}

// OpenAPI returns the OpenAPI 3 document of the routes h serves, built
// from the same table as the mux and from the Go types of the bodies.
func (h *handler) OpenAPI() map[string]any {
	schemas := map[string]any{}
	ref := func(v any) map[string]any { return schemaRef(reflect.TypeOf(v), schemas) }
	paths := map[string]any{}
	for _, rt := range h.routes() {
		p, _ := paths[rt.Path].(map[string]any)
		if p == nil {
			p = map[string]any{}
			paths[rt.Path] = p
		}
		op := map[string]any{"summary": rt.Summary, "operationId": operationID(rt)}
		var params []any
		if strings.Contains(rt.Path, "{name}") {
			params = append(params, map[string]any{"name": "name", "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range rt.Query {
			params = append(params, map[string]any{"name": q.Name, "in": "query", "required": false,
				"description": q.Description, "schema": map[string]any{"type": q.Type}})
		}
		if (rt.Method == "PUT" || rt.Method == "PATCH" || rt.Method == "DELETE") && rt.Query == nil && !strings.HasSuffix(rt.Path, "/trace") {
			params = append(params, map[string]any{"name": "If-Match", "in": "header", "required": false,
				"description": "revision from an ETag; a mismatch answers 409", "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.Request != nil {
			ct := map[string]any{"application/json": map[string]any{"schema": ref(rt.Request)}}
			if rt.Method == "PATCH" {
				ct = map[string]any{"application/merge-patch+json": map[string]any{"schema": map[string]any{"type": "object"}}}
			}
			op["requestBody"] = map[string]any{"required": true, "content": ct}
		}
		resps := map[string]any{}
		for _, c := range rt.Codes {
			resp := map[string]any{"description": http.StatusText(c)}
			switch {
			case c < 300 && c != 204 && rt.Response != nil:
				resp["content"] = map[string]any{"application/json": map[string]any{"schema": ref(rt.Response)}}
			case c < 300 && rt.Path == "/metrics":
				resp["content"] = map[string]any{"text/plain": map[string]any{"schema": map[string]any{"type": "string"}}}
			case c < 300 && rt.Path == "/v1/openapi.json":
				resp["content"] = map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}
			case c >= 400:
				resp["content"] = map[string]any{"application/json": map[string]any{"schema": ref(Error{})}}
			}
			resps[strconv.Itoa(c)] = resp
		}
		if h.Token != "" {
			resps["401"] = map[string]any{"description": "missing or wrong bearer token", "content": map[string]any{"application/json": map[string]any{"schema": ref(Error{})}}}
		}
		op["responses"] = resps
		p[strings.ToLower(rt.Method)] = op
	}
	doc := map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]any{"title": "vswitch API", "version": "1"},
		"paths":   paths,
		"components": map[string]any{
			"schemas":         schemas,
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
		},
	}
	if h.Token != "" {
		doc["security"] = []any{map[string]any{"bearer": []any{}}}
	}
	return doc
}

func operationID(rt route) string {
	s := strings.ToLower(rt.Method)
	for _, part := range strings.Split(strings.Trim(rt.Path, "/"), "/") {
		part = strings.Trim(part, "{}")
		part = strings.ReplaceAll(part, ".", "_")
		if part == "v1" {
			continue
		}
		s += "_" + part
	}
	return s
}

// schemaer is a type that encodes to JSON its own way and says how.
type schemaer interface{ JSONSchema() map[string]any }

var schemaerType = reflect.TypeFor[schemaer]()

// schemaRef returns the schema of t, registering named structs under
// components/schemas.
func schemaRef(t reflect.Type, schemas map[string]any) map[string]any {
	if t.Implements(schemaerType) {
		return reflect.Zero(t).Interface().(schemaer).JSONSchema()
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaRef(t.Elem(), schemas)
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": schemaRef(t.Elem(), schemas)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaRef(t.Elem(), schemas)}
	case reflect.Struct:
		name := t.Name()
		if _, ok := schemas[name]; !ok {
			schemas[name] = nil // marks the type as in progress: a recursive type stops here
			props := map[string]any{}
			addStructProps(t, props, schemas)
			schemas[name] = map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

func addStructProps(t reflect.Type, props map[string]any, schemas map[string]any) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			addStructProps(f.Type, props, schemas)
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		props[name] = schemaRef(f.Type, schemas)
	}
}
