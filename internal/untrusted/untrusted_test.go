package untrusted

import "testing"

func TestText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 8, "plain"},
		{"  line one\nforged=line\r\x1b[31m ", 100, "line one forged=line  [31m"},
		{"abcdefghij", 8, "abcdefgh…"},
		{"abcdefgé", 8, "abcdefg…"}, // é's two bytes straddle the limit
		{"", 8, ""},
	} {
		if got := Text(tc.in, tc.max); got != tc.want {
			t.Errorf("Text(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}
