// Package logging builds the structured logger of every function, so that
// all of them log the same way: JSON lines (what Lambda's JSON log format
// reads) at the level LOG_LEVEL names.
package logging

import (
	"fmt"
	"io"
	"log/slog"

	"gitlab-serverless-runner/pkg/envvar"
)

// Config is the logger's configuration. The zero value logs JSON at Info.
type Config struct {
	// Level is the lowest level written (LOG_LEVEL: debug, info, warn or
	// error; default info).
	Level slog.Level
	// Text writes slog's text format, for a person at a terminal (make
	// local), instead of JSON.
	Text bool
}

// ConfigFromEnv reads LOG_LEVEL through lookup (os.LookupEnv when nil).
func ConfigFromEnv(lookup envvar.Lookup) (Config, error) {
	r := envvar.New(lookup)
	var cfg Config
	if s := r.String("LOG_LEVEL"); s != "" {
		if err := cfg.Level.UnmarshalText([]byte(s)); err != nil {
			r.Fail(fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", s))
		}
	}
	return cfg, r.Err("logging")
}

// New returns a logger writing to w.
func New(w io.Writer, cfg Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Level}
	if cfg.Text {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// FromEnv is ConfigFromEnv then New, for a function's main: a LOG_LEVEL
// that does not parse is reported on the returned logger (as a warning) and
// the level stays Info, so the function still starts and says why.
func FromEnv(w io.Writer, lookup envvar.Lookup) *slog.Logger {
	cfg, err := ConfigFromEnv(lookup)
	log := New(w, cfg)
	if err != nil {
		log.Warn("LOG_LEVEL ignored", "error", err)
	}
	return log
}

// OrDiscard returns log, or a logger that writes nothing when log is nil:
// the default of every optional Logger in the project's packages.
func OrDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
