package mqtt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kvscamd/kvscamd/daemon/config"
)

// checkHold is how long Check keeps the session after subscribing: AWS
// IoT closes a connection whose subscription the policy refuses rather
// than refusing it in the SUBACK.
const checkHold = time.Second

// Check connects as thing with m's certificate, subscribes to every
// filter the daemon uses and disconnects, publishing nothing. It returns
// `kvscamd check`'s line and, on failure, an *Error whose Stage says
// whether TLS, authentication or the policy failed. It takes the
// client id, so a daemon running as the same thing is disconnected once.
func Check(ctx context.Context, m config.MQTT, thing string) (string, error) {
	f := Features{Commands: m.Commands, Shadow: m.Shadow, Jobs: m.Jobs}
	subs := Topics{Thing: thing}.subscriptions(f)
	routes := make([]Route, len(subs))
	for i, s := range subs {
		routes[i] = Route{Filter: s, Handle: func(Message) {}}
	}
	conn, err := Connect(ctx, ConnOptions{Endpoint: m.Endpoint, ClientID: thing, TLS: FileTLS(m), KeepAlive: m.KeepAlive.Std(), Routes: routes})
	if err != nil {
		return "mqtt: FAIL " + explainCheck(err, m), err
	}
	defer conn.Close()
	t := time.NewTimer(checkHold)
	defer t.Stop()
	select {
	case <-conn.Lost():
		err := &Error{Stage: StagePolicy, Err: fmt.Errorf("the broker closed the connection after SUBSCRIBE: %v", conn.Err())}
		return "mqtt: FAIL " + explainCheck(err, m), err
	case <-t.C:
	case <-ctx.Done():
	}
	return fmt.Sprintf("mqtt: ok connected to %s as %s, subscribed to %d topic filters", m.Endpoint, thing, len(subs)), nil
}

func explainCheck(err error, m config.MQTT) string {
	var e *Error
	if !errors.As(err, &e) {
		return err.Error()
	}
	switch e.Stage {
	case StageTLS:
		return fmt.Sprintf("TLS with %s: %v; check mqtt.endpoint (aws iot describe-endpoint --endpoint-type iot:Data-ATS), the CA bundle (mqtt.ca or credentials.ca, AmazonRootCA1.pem) and that %s and %s are the device's certificate and key", m.Endpoint, e.Err, m.Cert, m.Key)
	case StageAuth:
		return fmt.Sprintf("authentication at %s: %v; the certificate must be ACTIVE, attached to the thing, and its policy must allow iot:Connect on client/<thing_name> (daemon/mqtt/iot-policy.json)", m.Endpoint, e.Err)
	case StagePolicy:
		return fmt.Sprintf("policy: %v; attach the policy from daemon/mqtt/iot-policy.json, or turn off what the account lacks (mqtt.commands, mqtt.shadow, mqtt.jobs)", e.Err)
	}
	return e.Error()
}
