package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/vswitch/vswitch/api"
)

// Exit codes scripts can rely on.
const (
	exitOK          = 0
	exitError       = 1 // the daemon is unreachable, or failed (5xx)
	exitUsage       = 2 // bad command line
	exitNotFound    = 3 // no such resource (404)
	exitConflict    = 4 // exists already, or changed since read (409)
	exitInvalid     = 5 // the daemon refused the request as invalid (400, 413, 422)
	exitUnauthorize = 6 // missing or wrong token (401)
)

// DefaultAPI is where vswitchd listens by default.
const DefaultAPI = "unix:///run/vswitch/api.sock"

// exitError carries an exit code up to main.
type codeError struct {
	code int
	msg  string
}

func (e *codeError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &codeError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

// client talks to the API.
type client struct {
	base  string // http://vswitchd or https://host:port
	http  *http.Client
	token string
}

// newClient resolves the API address: --api, else $VSWITCH_API, else the
// default socket. unix://PATH, tcp://HOST:PORT (plain HTTP, loopback) or
// https://HOST:PORT (TLS, with --cacert for a private CA).
func newClient(addr, tokenFile, caFile string, timeout time.Duration) (*client, error) {
	if addr == "" {
		addr = os.Getenv("VSWITCH_API")
	}
	if addr == "" {
		addr = DefaultAPI
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, usageErr("--api %q: %v", addr, err)
	}
	c := &client{http: &http.Client{Timeout: timeout}}
	switch u.Scheme {
	case "unix":
		path := u.Path
		if u.Host != "" {
			path = u.Host + u.Path
		}
		c.base = "http://vswitchd"
		c.http.Transport = &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}}
	case "tcp", "http":
		c.base = "http://" + u.Host
	case "https":
		c.base = "https://" + u.Host
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if caFile != "" {
			pem, err := os.ReadFile(caFile)
			if err != nil {
				return nil, usageErr("--cacert: %v", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, usageErr("--cacert: no certificate in %s", caFile)
			}
		}
		c.http.Transport = &http.Transport{TLSClientConfig: tc}
	default:
		return nil, usageErr("--api %q: want unix://PATH, tcp://HOST:PORT or https://HOST:PORT", addr)
	}
	c.token = os.Getenv("VSWITCH_TOKEN")
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, usageErr("--token-file: %v", err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	return c, nil
}

// response is an answer with its body read.
type response struct {
	code int
	etag string
	body []byte
}

// do sends a request. Headers come in pairs. A non-2xx answer becomes a
// codeError with the daemon's message.
func (c *client) do(method, path string, body []byte, hdr ...string) (*response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] != "" {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &codeError{code: exitError, msg: fmt.Sprintf("cannot reach vswitchd: %v", err)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, &codeError{code: exitError, msg: fmt.Sprintf("reading the answer: %v", err)}
	}
	r := &response{code: resp.StatusCode, etag: resp.Header.Get("ETag"), body: b}
	if resp.StatusCode < 300 {
		return r, nil
	}
	var e api.Error
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
		for _, d := range e.Details {
			msg += "\n  " + d
		}
	}
	code := exitError
	switch resp.StatusCode {
	case http.StatusNotFound:
		code = exitNotFound
	case http.StatusConflict, http.StatusPreconditionFailed:
		code = exitConflict
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		code = exitInvalid
	case http.StatusUnauthorized, http.StatusForbidden:
		code = exitUnauthorize
	}
	return r, &codeError{code: code, msg: msg}
}

// getJSON GETs path into v.
func (c *client) getJSON(path string, v any) (*response, error) {
	r, err := c.do("GET", path, nil)
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		return r, fmt.Errorf("GET %s: %v", path, err)
	}
	return r, nil
}

// notYet turns a 404 for a whole collection into a clear message: the
// daemon does not have that resource yet.
func notYet(err error, what string) error {
	var ce *codeError
	if errors.As(err, &ce) && ce.code == exitNotFound {
		return &codeError{code: exitNotFound, msg: fmt.Sprintf("this vswitchd has no %s resource yet (%s)", what, ce.msg)}
	}
	return err
}
