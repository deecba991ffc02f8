// Command guestfwd runs inside the power-cut test VM: it accepts TCP
// connections on a guest loopback address and relays each to the host
// through QEMU's user-mode network, so that kvscamd in the guest talks to
// the host's endpoint under the address the endpoint itself advertises.
//
//	guestfwd LISTEN_ADDR TARGET_ADDR
package main

import (
	"fmt"
	"io"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: guestfwd LISTEN_ADDR TARGET_ADDR")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "guestfwd:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "guestfwd:", err)
			os.Exit(1)
		}
		go relay(c, os.Args[2])
	}
}

// relay copies both ways until either side closes; it owns c.
func relay(c net.Conn, target string) {
	defer c.Close()
	u, err := net.Dial("tcp", target)
	if err != nil {
		fmt.Fprintln(os.Stderr, "guestfwd:", err)
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, u); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}
