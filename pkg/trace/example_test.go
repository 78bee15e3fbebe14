package trace_test

import (
	"fmt"
	"os"

	"gitlab-serverless-runner/pkg/trace"
)

func ExampleMasker() {
	m := trace.NewMasker(os.Stdout, trace.MaskOptions{Phrases: []string{"hunter2hunter2"}})
	// A secret split across writes is still found.
	fmt.Fprint(m, "password: hunter2")
	fmt.Fprint(m, "hunter2\n")
	fmt.Fprint(m, "clone https://h/p.git?private_token=abc&ref=main with glpat-0123456789\n")
	m.Close()
	// Output:
	// password: [MASKED]
	// clone https://h/p.git?private_token=[MASKED]&ref=main with glpat-[MASKED]
}
