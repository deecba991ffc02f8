// Command gencerts writes a throw-away PKI for local runs and demos: a CA,
// a server certificate for 127.0.0.1/localhost and device certificates
// (valid, expired, not yet valid, signed by an unrelated CA), with keys
// of mode 0600.
//
//	go run ./credentials/testpki/gencerts -dir /tmp/kvscamd-pki -thing cam-0001
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kvscamd/kvscamd/credentials/testpki"
)

func main() {
	dir := flag.String("dir", "", "directory to write the files into (created if missing)")
	thing := flag.String("thing", "cam-0001", "thing name, used as the device certificates' common name")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "gencerts: -dir is required")
		os.Exit(2)
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "gencerts: %v\n", err)
		os.Exit(1)
	}
	s, err := testpki.Generate(*dir, *thing)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gencerts: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("ca=%s\nserver_cert=%s\nserver_key=%s\ncert=%s\nkey=%s\n",
		s.CAFile, s.Server.Cert, s.Server.Key, s.Client.Cert, s.Client.Key)
}
