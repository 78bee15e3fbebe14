package envvar_test

import (
	"strings"
	"testing"
	"time"

	"gitlab-serverless-runner/pkg/envvar"
)

func env(m map[string]string) envvar.Lookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestReader(t *testing.T) {
	r := envvar.New(env(map[string]string{
		"S": " value ", "EMPTY": "", "N": "7", "SECS": "90", "DUR": "1m30s", "B": "true", "F": "0.5", "L": "a, b,,c ",
	}))
	if got := r.String("S"); got != "value" {
		t.Errorf("String = %q, want trimmed value", got)
	}
	if got := r.StringOr("EMPTY", "def"); got != "def" || !r.Set("EMPTY") || r.Set("UNSET") {
		t.Errorf("StringOr(empty) = %q, Set(EMPTY) %v, Set(UNSET) %v; want def, true, false", got, r.Set("EMPTY"), r.Set("UNSET"))
	}
	if r.Int("N", 1) != 7 || r.Seconds("SECS") != 90*time.Second || r.Duration("DUR") != 90*time.Second || !r.Bool("B") || r.Float("F") != 0.5 {
		t.Error("numbers, durations or flags read wrong")
	}
	if got := strings.Join(r.List("L"), "|"); got != "a|b|c" {
		t.Errorf("List = %q, want a|b|c", got)
	}
	if r.Int("UNSET", 1) != 0 || r.Seconds("UNSET") != 0 || r.Duration("UNSET") != 0 || r.Bool("UNSET") {
		t.Error("unset variables must read as zero values (the defaults)")
	}
	if err := r.Err("test"); err != nil {
		t.Errorf("Err = %v, want nil", err)
	}
}

func TestReaderErrorsNameEveryVariable(t *testing.T) {
	r := envvar.New(env(map[string]string{"N": "-1", "SECS": "1.5", "DUR": "soon", "B": "yes please", "F": "-2"}))
	r.Int("N", 0)
	r.Seconds("SECS")
	r.Duration("DUR")
	r.Bool("B")
	r.Float("F")
	err := r.Err("thing")
	if err == nil {
		t.Fatal("Err = nil, want the five bad values")
	}
	for _, want := range []string{"thing: read configuration", `N="-1"`, `SECS="1.5"`, `DUR="soon"`, `B="yes please"`, `F="-2"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
