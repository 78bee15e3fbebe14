package samtemplate_test

import (
	"fmt"
	"strings"
	"testing"

	"gitlab-serverless-runner/pkg/samtemplate"
	"gitlab-serverless-runner/pkg/web"
)

// The runtimes the web app offers by default (and so make local) are the
// ones a deployment with the template's default parameters offers.
func TestWebDefaultRuntimesAreTheTemplatesDefaults(t *testing.T) {
	tpl := loadTemplate(t)
	params := tpl.Section("Parameters")
	def := func(name string) string {
		return fmt.Sprint(samtemplate.Path(params, name, "Default"))
	}
	want := strings.Join([]string{"provided.al2023", def("PythonRuntime"), def("NodeRuntime")}, ",")
	if got := strings.Join(web.DefaultRuntimes, ","); got != want {
		t.Errorf("web.DefaultRuntimes = %s, want the template's defaults %s", got, want)
	}
}
