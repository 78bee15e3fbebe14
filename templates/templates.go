// Package templates owns the web application's HTML templates and its one
// stylesheet, embedded in the binary. Every page is its own template set:
// layout.html and partials.html parsed together with that page's file, so
// two pages can both define "content" without one replacing the other.
package templates

import (
	"embed"
	"fmt"
	"html/template"
)

//go:embed *.html
var files embed.FS

// CSS is the stylesheet every page links to, served at /static/style.css.
//
//go:embed style.css
var CSS []byte

// Page names: each is the file <name>.html, rendered by executing "layout".
const (
	Login      = "login"
	Runners    = "runners"
	RunnerNew  = "runner_new"
	Runner     = "runner"
	RunnerEdit = "runner_edit"
	Error      = "error"
)

// Pages lists every page Parse builds.
var Pages = []string{Login, Runners, RunnerNew, Runner, RunnerEdit, Error}

// Parse builds one template set per page with funcs available to all of
// them. Call it once at start-up: a template that does not parse is a
// programming error reported here, not at request time.
func Parse(funcs template.FuncMap) (map[string]*template.Template, error) {
	sets := make(map[string]*template.Template, len(Pages))
	for _, name := range Pages {
		t, err := template.New(name).Funcs(funcs).ParseFS(files, "layout.html", "partials.html", name+".html")
		if err != nil {
			return nil, fmt.Errorf("templates: parse page %s: %w", name, err)
		}
		if t.Lookup("layout") == nil || t.Lookup("content") == nil {
			return nil, fmt.Errorf("templates: page %s does not define layout and content", name)
		}
		sets[name] = t
	}
	return sets, nil
}
