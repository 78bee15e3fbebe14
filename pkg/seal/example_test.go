package seal_test

import (
	"fmt"

	"gitlab-serverless-runner/pkg/seal"
)

func Example() {
	// The key comes from configuration: "id:base64" entries, the first
	// sealing, all of them opening.
	sealer, err := seal.ParseKeys("1:" + seal.GenerateKey())
	if err != nil {
		fmt.Println(err)
		return
	}
	sealed, _ := sealer.Seal("runner-1", "glrt-example-token")

	token, err := sealer.Open("runner-1", sealed)
	fmt.Println(token, err)

	_, err = sealer.Open("runner-2", sealed)
	fmt.Println(err)
	// Output:
	// glrt-example-token <nil>
	// seal: cannot open sealed token
}
