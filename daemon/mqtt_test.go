package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/kvscamd/kvscamd/daemon/mqtt"
	"github.com/kvscamd/kvscamd/internal/mosquittotest"
	"github.com/kvscamd/kvscamd/internal/testclips"
)

// presenceWatcher subscribes to a thing's presence topic and hands over
// every message it gets, the retained one first.
func presenceWatcher(t *testing.T, b *mosquittotest.Broker, topic string) <-chan mqtt.Presence {
	t.Helper()
	ch := make(chan mqtt.Presence, 16)
	var once sync.Once
	o := paho.NewClientOptions().AddBroker("tls://" + b.Addr()).SetClientID(fmt.Sprintf("watcher-%d", time.Now().UnixNano())).
		SetTLSConfig(b.ClientTLS(mosquittotest.Cloud)).SetAutoReconnect(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher: %v", tok.Error())
	}
	t.Cleanup(func() { once.Do(func() { c.Disconnect(0) }) })
	tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		var p mqtt.Presence
		if json.Unmarshal(m.Payload(), &p) == nil {
			select {
			case ch <- p:
			default:
			}
		}
	})
	if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher subscribe: %v", tok.Error())
	}
	return ch
}

func nextPresence(t *testing.T, ch <-chan mqtt.Presence, online bool, stderr *syncBuffer) mqtt.Presence {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case p := <-ch:
			if p.Online == online {
				return p
			}
		case <-timeout:
			t.Fatalf("no presence online=%v within 30 s; daemon stderr:\n%s", online, stderr.String())
		}
	}
}

// The real daemon announces itself over MQTT; killed with SIGKILL, it
// sends nothing more, and the broker's last will turns the retained
// presence offline.
func TestMQTTPresenceLastWill(t *testing.T) {
	b := mosquittotest.Start(t)
	files := b.ClientFiles("cam-test")
	clip := testclips.Get("high-aud.h264")
	cfg, _ := writeRunConfig(t, clip, true, fmt.Sprintf(`
[mqtt]
enabled = true
endpoint = %q
keep_alive = "30s"
cert = %q
key = %q
ca = %q
`, b.Addr(), files.Cert, files.Key, b.CAFile))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "run", "-config", cfg, "-socket", filepath.Join(t.TempDir(), "kvscamd.sock"))
	cmd.Env = append(os.Environ(), asKvscamd+"=1")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	topic := mqtt.Topics{Thing: "cam-test"}.Presence()
	watch := presenceWatcher(t, b, topic)
	if p := nextPresence(t, watch, true, &stderr); len(p.Streams) != 1 || p.Streams[0] != "cam-test" {
		t.Errorf("online presence: %+v", p)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	nextPresence(t, watch, false, &stderr)
	// It is retained: a newcomer learns the camera is gone.
	if p := nextPresence(t, presenceWatcher(t, b, topic), false, &stderr); p.Online {
		t.Errorf("retained presence after SIGKILL: %+v", p)
	}
	if bytes.Contains([]byte(stderr.String()), []byte("panic")) {
		t.Errorf("daemon stderr:\n%s", stderr.String())
	}
}
