// Command vswitchd is the switch daemon: flags, config, signals.
package main

import (
	"flag"
	"fmt"
	"net/http"
	_ "net/http/pprof" // served only with --pprof, on loopback
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/vswitch/vswitch/api"
	"github.com/vswitch/vswitch/internal/daemon"
)

func main() {
	configPath := flag.String("config", "", "YAML config file (default: the embedded one-bridge, two-port config)")
	runDir := flag.String("run-dir", "", "directory for sockets with relative paths and the API socket (default /run/vswitch)")
	logLevel := flag.String("log-level", "", "debug, info, warn or error (overrides the config)")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this loopback address (e.g. 127.0.0.1:6060)")
	flag.Parse()
	if *pprofAddr != "" {
		if l, err := api.ParseListen("tcp://" + *pprofAddr); err != nil {
			fmt.Fprintln(os.Stderr, "vswitchd: --pprof:", err)
			os.Exit(2)
		} else {
			go http.ListenAndServe(l.Address, nil)
		}
	}
	if err := run(*configPath, *runDir, *logLevel); err != nil {
		fmt.Fprintln(os.Stderr, "vswitchd:", err)
		os.Exit(1)
	}
}

func run(configPath, runDir, logLevel string) error {
	yaml := api.DefaultYAML()
	source := "embedded default"
	if configPath != "" {
		b, err := os.ReadFile(configPath)
		if err != nil {
			return err
		}
		yaml, source = b, configPath
	}
	cfg, err := api.Load(yaml, runDir)
	if err != nil {
		return err
	}
	if logLevel != "" {
		cfg.Log.Level = logLevel
	}
	log := logrus.New()
	if cfg.Log.Format == "json" {
		log.SetFormatter(&logrus.JSONFormatter{})
	}
	if lvl, err := logrus.ParseLevel(cfg.Log.Level); err == nil && cfg.Log.Level != "" {
		log.SetLevel(lvl)
	}
	entry := logrus.NewEntry(log)
	// The data plane allocates nothing per packet; keep the heap small.
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(512 << 20)

	listen, _ := api.ParseListen(cfg.API.Listen)
	d, err := daemon.Start(cfg, entry)
	if err != nil {
		return err
	}
	defer d.Close()
	mode, _ := api.ParseMode(cfg.API.SocketMode)
	ln, err := api.Listener(listen, os.FileMode(mode))
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	srv := api.NewServer(api.NewHandler(d))
	go srv.Serve(ln)
	defer srv.Close()
	entry.WithFields(logrus.Fields{"config": source, "api": cfg.API.Listen, "ports": len(cfg.Ports)}).Info("vswitchd running")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	s := <-sig
	entry.WithField("signal", s.String()).Info("shutting down")
	return nil
}
