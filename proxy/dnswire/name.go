package dnswire

import "strings"

// PresentName is a wire-format name in presentation form, for logs and the
// admin API: labels joined by dots, "." for the root.
func PresentName(w []byte) string {
	var b strings.Builder
	for i := 0; i < len(w) && w[i] != 0; i += int(w[i]) + 1 {
		end := min(i+1+int(w[i]), len(w))
		b.Write(w[i+1 : end])
		b.WriteByte('.')
	}
	if b.Len() == 0 {
		return "."
	}
	return b.String()
}
