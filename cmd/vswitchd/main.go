// Command vswitchd is the switch daemon: flags, config, state, signals.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	_ "net/http/pprof" // served only with --pprof, on loopback
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/internal/daemon"
)

func main() {
	configPath := flag.String("config", "", "YAML config that seeds a first start (empty state directory) and that SIGHUP applies (default: the embedded one-bridge, two-port config)")
	runDir := flag.String("run-dir", "", "directory for sockets with relative paths and the API socket (default /run/vswitch)")
	stateDir := flag.String("state-dir", "/var/lib/vswitch", "directory where the desired state is saved; on start it is restored from there")
	logLevel := flag.String("log-level", "", "debug, info, warn or error (overrides the config)")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this loopback address (e.g. 127.0.0.1:6060)")
	flag.Parse()
	if *pprofAddr != "" {
		if l, err := api.ParseListen("tcp://" + *pprofAddr); err != nil || !l.Loopback {
			fmt.Fprintf(os.Stderr, "vswitchd: --pprof: %q is not a loopback address (%v)\n", *pprofAddr, err)
			os.Exit(2)
		} else {
			go http.ListenAndServe(l.Address, nil)
		}
	}
	if err := run(*configPath, *runDir, *stateDir, *logLevel); err != nil {
		fmt.Fprintln(os.Stderr, "vswitchd:", err)
		os.Exit(1)
	}
}

// initialState restores the saved state, or seeds a first start from the
// config file (or the embedded default). The saved state is the source of
// truth: once it exists, --config only matters to SIGHUP.
func initialState(configPath, runDir, stateDir, logLevel string) (st *api.State, source string, err error) {
	st, err = api.LoadState(stateDir)
	if err != nil {
		return nil, "", fmt.Errorf("state: %w", err)
	}
	var cfg *api.Config
	if st != nil {
		cfg = st.Config.Clone()
		source = "state " + stateDir
		if runDir != "" {
			cfg.RunDir = runDir
		}
	} else {
		yaml := api.DefaultYAML()
		source = "embedded default"
		if configPath != "" {
			if yaml, err = os.ReadFile(configPath); err != nil {
				return nil, "", err
			}
			source = configPath
		}
		if cfg, err = api.Parse(yaml); err != nil {
			return nil, "", err
		}
		if runDir != "" {
			cfg.RunDir = runDir
		}
	}
	if logLevel != "" {
		cfg.Log.Level = logLevel
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, "", fmt.Errorf("%s: %w", source, err)
	}
	cfg.Normalize()
	if st == nil {
		st = api.NewState(cfg)
	} else {
		st.Config = *cfg
	}
	return st, source, nil
}

// lockStateDir makes sure only one vswitchd uses stateDir. The lock goes
// away with the process, crash or not.
func lockStateDir(stateDir string) (*os.File, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(stateDir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("state directory %s is in use by another vswitchd (%v)", stateDir, err)
	}
	return f, nil
}

func run(configPath, runDir, stateDir, logLevel string) error {
	lock, err := lockStateDir(stateDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	st, source, err := initialState(configPath, runDir, stateDir, logLevel)
	if err != nil {
		return err
	}
	cfg := &st.Config
	log := logrus.New()
	daemon.SetLog(log, cfg.Log)
	entry := logrus.NewEntry(log)
	// The data plane allocates nothing per packet; keep the heap small.
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(512 << 20)

	// Refuse to start rather than serve the API insecurely.
	listen, _ := api.ParseListen(cfg.API.Listen)
	var token string
	if cfg.API.TokenFile != "" {
		b, err := os.ReadFile(cfg.API.TokenFile)
		if err != nil {
			return fmt.Errorf("api.token_file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); len(token) < 16 {
			return errors.New("api.token_file: the token must have at least 16 characters")
		}
	}
	var tlsCfg *tls.Config
	if cfg.API.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.API.TLSCert, cfg.API.TLSKey)
		if err != nil {
			return fmt.Errorf("api.tls_cert: %w", err)
		}
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	if !listen.Local() && (tlsCfg == nil || token == "") {
		return fmt.Errorf("api.listen: %s is reachable from other hosts: it needs TLS and a bearer token", cfg.API.Listen)
	}

	d, err := daemon.Start(cfg, entry)
	if err != nil {
		return err
	}
	defer d.Close()
	save := func(s *api.State) error { return api.SaveState(stateDir, s) }
	if err := save(st); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	store := api.NewStore(st, d.Reconcile, save)

	mode, _ := api.ParseMode(cfg.API.SocketMode)
	ln, err := api.Listener(listen, os.FileMode(mode), cfg.API.SocketOwner, cfg.API.SocketGroup)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	srv := api.NewServer(api.NewHandler(api.Options{
		Source: d, Store: store, Token: token, Tracer: d,
		Metrics: d.MetricsHandler(func() uint64 { return store.Snapshot().Revision }),
	}))
	if tlsCfg != nil {
		srv.TLSConfig = tlsCfg
		go srv.ServeTLS(ln, "", "")
	} else {
		go srv.Serve(ln)
	}
	defer srv.Close()
	entry.WithFields(logrus.Fields{"config": source, "state": stateDir, "revision": st.Revision,
		"api": cfg.API.Listen, "ports": len(cfg.Ports)}).Info("vswitchd running")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	for s := range sig {
		if s != syscall.SIGHUP {
			entry.WithField("signal", s.String()).Info("shutting down")
			return nil
		}
		reload(configPath, store, entry)
	}
	return nil
}

// reload applies the --config file through the reconciler (SIGHUP).
func reload(configPath string, store *api.Store, log *logrus.Entry) {
	if configPath == "" {
		log.Warn("SIGHUP: no --config file to apply")
		return
	}
	b, err := os.ReadFile(configPath)
	var c *api.Config
	if err == nil {
		c, err = api.Parse(b)
	}
	var res *api.Result
	if err == nil {
		res, err = store.Replace(c, 0, false)
	}
	if err != nil {
		log.WithError(err).WithField("config", configPath).Error("SIGHUP: config not applied; nothing changed")
		return
	}
	log.WithFields(logrus.Fields{"config": configPath, "revision": res.Revision, "actions": res.Actions}).Info("SIGHUP: config applied")
}
