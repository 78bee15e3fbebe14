package templates_test

import (
	"html/template"
	"strings"
	"testing"

	"gitlab-serverless-runner/templates"
)

func TestParse(t *testing.T) {
	funcs := template.FuncMap{
		"when": func(any) string { return "" }, "duration": func(any) string { return "" },
		"cost": func(any) string { return "" }, "modeName": func(string) string { return "" },
	}
	sets, err := templates.Parse(funcs)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	for _, name := range templates.Pages {
		t.Run(name, func(t *testing.T) {
			set, ok := sets[name]
			if !ok {
				t.Fatalf("no template set for page %s", name)
			}
			for _, part := range []string{"layout", "content", "error-for"} {
				if set.Lookup(part) == nil {
					t.Errorf("page %s has no %q template", name, part)
				}
			}
		})
	}
	if _, err := templates.Parse(template.FuncMap{}); err == nil {
		t.Errorf("Parse without the functions the pages use succeeded, want an error")
	}
	if !strings.Contains(string(templates.CSS), "@media") {
		t.Errorf("the stylesheet has no small-screen rules")
	}
}
