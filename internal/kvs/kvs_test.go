package kvs

import (
	"strings"
	"testing"
)

func TestCheckStreamName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"cam-0001", true},
		{"a", true},
		{"A.b_c-9", true},
		{"...x", true},
		{strings.Repeat("x", MaxStreamNameLen), true},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"cam 1", false},
		{"caméra", false},
		{strings.Repeat("x", MaxStreamNameLen+1), false},
	} {
		err := CheckStreamName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckStreamName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
