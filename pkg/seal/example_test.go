package seal_test

import (
	"fmt"

	"gitlab-serverless-runner/pkg/seal"
)

func Example() {
	// The keys come from configuration: base64 keys newest first (or
	// "id:base64" entries), the first sealing, all of them opening.
	keys, err := seal.ParseKeys(seal.GenerateKey())
	if err != nil {
		fmt.Println(err)
		return
	}
	sealed, _ := keys.Seal(seal.RunnerToken("runner-1"), "glrt-example-token")

	token, err := keys.Open(seal.RunnerToken("runner-1"), sealed)
	fmt.Println(token, err)

	// Sealed for one purpose, it opens for no other.
	_, err = keys.Open(seal.RunnerToken("runner-2"), sealed)
	fmt.Println(err)
	_, err = keys.Open(seal.Cookie("runner-1"), sealed)
	fmt.Println(err)
	// Output:
	// glrt-example-token <nil>
	// seal: cannot open sealed value
	// seal: cannot open sealed value
}
