// Package mqtt manages the daemon over AWS IoT Core: AWS IoT commands,
// the named shadow "kvscamd", AWS IoT jobs, a retained presence message
// with a last will, and periodic telemetry.
//
// It is a front-end like the status socket, never a second source of
// truth: every action is a status.Command given to the daemon's Do, every
// report is built from its Status, and settings go through the same
// validation as a reload.
//
// Conn is one session with mutual TLS (SNI, ALPN on port 443); Connect and
// Conn.Request are what `kvscamd check` and a provisioning step need.
// Runner keeps a session up for the daemon: it reconnects with jittered
// back-off, subscribes again on every connect (session resumption is
// never trusted), and hands every message to the worker of its feature,
// so that paho's network goroutine never waits for the daemon.
//
// Goroutines: Runner.Run owns one per feature (commands, shadow, jobs),
// one for telemetry and its own connect loop; all have ended when it
// returns. Payloads received belong to the worker they are queued for.
//
// Dependency: github.com/eclipse/paho.mqtt.golang (MQTT 3.1.1), dual
// licensed EPL-2.0 or EDL-1.0 (BSD-3-Clause); kvscamd uses it under EDL-1.0.
package mqtt
