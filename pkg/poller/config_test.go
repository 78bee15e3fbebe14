package poller_test

import (
	"maps"
	"testing"

	"gitlab-serverless-runner/pkg/poller"
)

func TestParseFunctions(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string]string
		wantErr bool
	}{
		{"provided.al2023=gsr-executor", map[string]string{"provided.al2023": "gsr-executor"}, false},
		{" provided.al2023 = a , python3.13=b,", map[string]string{"provided.al2023": "a", "python3.13": "b"}, false},
		{"", nil, true},
		{"provided.al2023", nil, true},
		{"=fn", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := poller.ParseFunctions(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseFunctions(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if !tt.wantErr && !maps.Equal(got, tt.want) {
				t.Errorf("ParseFunctions(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
