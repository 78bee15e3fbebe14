package web_test

import (
	"net/url"
	"strconv"
)

func cloneForm(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
