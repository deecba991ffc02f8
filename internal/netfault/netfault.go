// Package netfault puts a process behind a real, faulty network link for
// tests: a network namespace joined to the host's by a veth pair, with
// rate limits from tc (tbf), loss, black holes and connection resets from
// nftables, link flaps from ip, and delay and jitter from a small TCP
// proxy (Proxy), since this kernel has no netem.
//
// The camera side of a Link is the namespace: commands started with
// Link.Command run there and reach the host side at Link.HostIP. Faults
// shape what the camera side sends (the upload direction) and drop or
// reset in both directions. Everything needs root and the tools of
// Debian's iproute2 and nftables packages; Check says what is missing.
//
// A Link owns its namespace, veth pair and nftables tables; Close removes
// them, and New registers Close with the test.
package netfault

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Tools a Link runs, with the Debian package that has each.
var tools = map[string]string{"ip": "iproute2", "tc": "iproute2", "nft": "nftables"}

// Check returns an error naming what is missing to build links here.
func Check() error {
	if os.Geteuid() != 0 {
		return errors.New("netfault: network namespaces need root (run the fault tests as root, as CI does)")
	}
	var missing []string
	for tool, pkg := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", tool, pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("netfault: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// Link is one camera namespace and its veth pair to the host namespace.
type Link struct {
	// NS is the namespace's name; CamDev the veth inside it, HostDev its
	// peer in the host namespace.
	NS, CamDev, HostDev string
	// CamIP and HostIP are the two ends' addresses (a /30 each).
	CamIP, HostIP string

	mu     sync.Mutex
	faults faultSet
	closed bool
}

// faultSet is what the nftables tables currently hold.
type faultSet struct {
	lossPct    int
	blackHole  bool
	resetAfter int64 // bytes client->server before a connection is reset; 0 off
	resetPort  int
}

var nameRE = regexp.MustCompile(`^[a-z0-9]{1,8}$`)

// New creates namespace "nf-<name>" and veth pair "nf<name>c"/"nf<name>h"
// with addresses 10.213.<subnet>.1 (camera) and .2 (host). name must be
// 1-8 lowercase letters or digits and subnet (0-255) unique among the
// links alive at once. Close runs at the end of the test.
func New(tb testing.TB, name string, subnet int) *Link {
	tb.Helper()
	if err := Check(); err != nil {
		tb.Fatal(err)
	}
	l, err := Create(name, subnet)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("netfault: %v", err)
		}
	})
	return l
}

// Create is New without a test: the caller must Close the link.
func Create(name string, subnet int) (*Link, error) {
	if !nameRE.MatchString(name) || subnet < 0 || subnet > 255 {
		return nil, fmt.Errorf("netfault: link %q/%d: name must be 1-8 of a-z0-9, subnet 0-255", name, subnet)
	}
	l := &Link{
		NS: "nf-" + name, CamDev: "nf" + name + "c", HostDev: "nf" + name + "h",
		CamIP: fmt.Sprintf("10.213.%d.1", subnet), HostIP: fmt.Sprintf("10.213.%d.2", subnet),
	}
	// Leftovers of a killed earlier run would make every step fail.
	_ = run("ip", "netns", "del", l.NS)
	_ = run("ip", "link", "del", l.HostDev)
	steps := [][]string{
		{"ip", "netns", "add", l.NS},
		{"ip", "link", "add", l.HostDev, "type", "veth", "peer", "name", l.CamDev},
		{"ip", "link", "set", l.CamDev, "netns", l.NS},
		{"ip", "addr", "add", l.HostIP + "/30", "dev", l.HostDev},
		{"ip", "link", "set", l.HostDev, "up"},
		{"ip", "-n", l.NS, "addr", "add", l.CamIP + "/30", "dev", l.CamDev},
		{"ip", "-n", l.NS, "link", "set", l.CamDev, "up"},
		{"ip", "-n", l.NS, "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			_ = l.Close()
			return nil, err
		}
	}
	if err := l.nft(obsTable(l)); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

// Close removes the namespace (and with it the veth pair) and the host
// side's nftables table.
func (l *Link) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	_ = run("nft", "delete", "table", "inet", l.hostTable())
	err := run("ip", "netns", "del", l.NS)
	_ = run("ip", "link", "del", l.HostDev) // gone with the namespace, normally
	return err
}

// Command returns a command that runs in the camera namespace.
func (l *Link) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.NS, name}, args...)...)
}

// SetRate limits what the camera side sends to bitsPerSecond with a
// token bucket filter (0 removes the limit). The queue holds about half a
// second at that rate, as a modem's buffer would.
func (l *Link) SetRate(bitsPerSecond int64) error {
	_ = run("ip", "netns", "exec", l.NS, "tc", "qdisc", "del", "dev", l.CamDev, "root")
	if bitsPerSecond <= 0 {
		return nil
	}
	burst := max(bitsPerSecond/8/50, 16<<10) // 20 ms worth, at least 16 KiB
	return run("ip", "netns", "exec", l.NS, "tc", "qdisc", "add", "dev", l.CamDev, "root", "tbf",
		"rate", strconv.FormatInt(bitsPerSecond, 10)+"bit", "burst", strconv.FormatInt(burst, 10), "latency", "500ms")
}

// SetLoss drops percent of the packets in each direction at random (0
// removes it).
func (l *Link) SetLoss(percent int) error {
	return l.update(func(f *faultSet) { f.lossPct = percent })
}

// BlackHole drops every packet between the two ends, silently (no RST, no
// ICMP), while the link stays up: open connections hang and new ones time
// out.
func (l *Link) BlackHole(on bool) error {
	return l.update(func(f *faultSet) { f.blackHole = on })
}

// ResetAfter resets (RST to both ends) every TCP connection to the host
// side's port once the camera side has sent more than n bytes on it; n = 0
// removes the rule. The host side's table does it, so the server's socket
// sees the reset too.
func (l *Link) ResetAfter(port int, n int64) error {
	return l.update(func(f *faultSet) { f.resetAfter, f.resetPort = n, port })
}

// SetUp takes the camera side's interface down (a partition: sends fail
// with "network unreachable", open connections stall) or up again.
func (l *Link) SetUp(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	// The address and its route come back with the link.
	return run("ip", "-n", l.NS, "link", "set", l.CamDev, state)
}

// Clear removes every fault: rate, loss, black hole, resets; the link is
// up.
func (l *Link) Clear() error {
	errs := []error{l.SetRate(0), l.SetUp(true), l.update(func(f *faultSet) { *f = faultSet{} })}
	return errors.Join(errs...)
}

// SYNs counts the TCP connection attempts the camera side has made to the
// host side since the link was made (dropped ones included).
func (l *Link) SYNs() (int64, error) {
	out, err := output("ip", "netns", "exec", l.NS, "nft", "list", "counter", "inet", "nfobs", "syns")
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`packets (\d+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("netfault: no packet count in %q", out)
	}
	return strconv.ParseInt(string(m[1]), 10, 64)
}

func (l *Link) hostTable() string { return "nf_" + strings.TrimPrefix(l.NS, "nf-") }

// obsTable counts SYNs in the namespace; it is never rebuilt, so the
// count survives fault changes.
func obsTable(l *Link) string {
	return fmt.Sprintf(`table inet nfobs {
	counter syns { }
	chain out {
		type filter hook output priority -10; policy accept;
		oifname %q tcp flags & (syn|ack) == syn counter name syns
	}
}
`, l.CamDev)
}

// update changes the fault set and rewrites both tables from it.
func (l *Link) update(change func(*faultSet)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("netfault: link is closed")
	}
	change(&l.faults)
	f := l.faults
	var cam bytes.Buffer
	fmt.Fprintf(&cam, "table inet nffault\ndelete table inet nffault\ntable inet nffault {\n")
	for _, hook := range []struct{ chain, hook, dir string }{{"out", "output", "oifname"}, {"in", "input", "iifname"}} {
		fmt.Fprintf(&cam, "\tchain %s {\n\t\ttype filter hook %s priority 0; policy accept;\n", hook.chain, hook.hook)
		if f.blackHole {
			fmt.Fprintf(&cam, "\t\t%s %q drop\n", hook.dir, l.CamDev)
		}
		if f.lossPct > 0 {
			fmt.Fprintf(&cam, "\t\t%s %q numgen random mod 100 < %d drop\n", hook.dir, l.CamDev, f.lossPct)
		}
		if f.resetAfter > 0 && hook.chain == "out" {
			// The host side's rules reset the server's socket, but
			// the RST they send towards the camera can be lost on
			// large segments; this one resets the camera's socket
			// from its own stack.
			fmt.Fprintf(&cam, "\t\toifname %q ip daddr %s tcp dport %d tcp flags & rst == 0 ct original bytes > %d reject with tcp reset\n", l.CamDev, l.HostIP, f.resetPort, f.resetAfter)
		}
		cam.WriteString("\t}\n")
	}
	cam.WriteString("}\n")
	if err := l.nft(cam.String()); err != nil {
		return err
	}
	ht := l.hostTable()
	var host bytes.Buffer
	fmt.Fprintf(&host, "table inet %s\ndelete table inet %s\n", ht, ht)
	if f.resetAfter > 0 {
		// ct original bytes counts what the camera sent on the
		// connection; rejecting in input sends the RST to the camera,
		// in output (the server's packets) to the local server socket.
		fmt.Fprintf(&host, `table inet %s {
	chain in {
		type filter hook input priority 0; policy accept;
		iifname %q ip saddr %s tcp dport %d ct original bytes > %d reject with tcp reset
	}
	chain out {
		type filter hook output priority 0; policy accept;
		oifname %q ip daddr %s tcp sport %d ct original bytes > %d reject with tcp reset
	}
}
`, ht, l.HostDev, l.CamIP, f.resetPort, f.resetAfter, l.HostDev, l.CamIP, f.resetPort, f.resetAfter)
	}
	return hostNft(host.String())
}

func (l *Link) nft(script string) error {
	cmd := exec.Command("ip", "netns", "exec", l.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("netfault: nft in %s: %v: %s\n%s", l.NS, err, out, script)
	}
	return nil
}

func hostNft(script string) error {
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("netfault: nft: %v: %s\n%s", err, out, script)
	}
	return nil
}

func run(name string, args ...string) error {
	_, err := output(name, args...)
	return err
}

func output(name string, args ...string) ([]byte, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netfault: %s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Established returns the local ports of the camera side's established
// TCP connections to the host side's port.
func (l *Link) Established(port int) (map[int]bool, error) {
	out, err := output("ip", "netns", "exec", l.NS, "ss", "-Htn", "state", "established", "dst", l.HostIP, "dport", "= :"+strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	ports := map[int]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		local := f[len(f)-2]
		if i := strings.LastIndexByte(local, ':'); i >= 0 {
			if p, err := strconv.Atoi(local[i+1:]); err == nil {
				ports[p] = true
			}
		}
	}
	return ports, nil
}
