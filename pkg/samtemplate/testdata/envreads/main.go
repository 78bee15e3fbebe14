// Command envreads reads environment variables in every way EnvReads
// recognises, and names others it must not count.
package main

import (
	"fmt"
	"os"

	"gitlab-serverless-runner/pkg/envvar"
)

func main() {
	_ = os.Getenv("GETENV")
	_, _ = os.LookupEnv("LOOKUPENV")
	_ = envOr("ENV_OR", "default")
	_ = fromLookup(os.LookupEnv)
	_ = fromReader(envvar.New(nil))
	fmt.Println("NOT_READ", notAnEnvHelper("NOT_READ_EITHER"))
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func notAnEnvHelper(s string) string { return s }

func fromLookup(lookup func(string) (string, bool)) string {
	a, _ := lookup("A_LOOKUP")
	get := func(k string) string { v, _ := lookup(k); return v }
	for _, name := range []string{"FROM_TABLE"} {
		_ = get(name)
	}
	return a + get("GET_CLOSURE") + notAnEnvHelper("lowercase")
}

func fromReader(r *envvar.Reader) string {
	return r.String("FROM_READER")
}
