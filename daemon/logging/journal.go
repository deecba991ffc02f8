package logging

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// sendTimeout bounds how long one entry may wait for a wedged journald
// before it is written as text instead; logging must not stall uploads.
const sendTimeout = 2 * time.Second

// maxFieldName is journald's limit on the length of a field name.
const maxFieldName = 64

// aliases give the attributes the daemon logs under short names the field
// names operators query by. The key is the upper-cased attribute name.
var aliases = map[string]string{
	"ERR":      "ERROR",
	"TIMECODE": "FRAGMENT_TIMECODE",
	"ERROR_ID": "KVS_ERROR_ID",
}

// reserved are the fields the handler sets itself; an attribute of the
// same name is renamed rather than given a second MESSAGE or PRIORITY.
var reserved = map[string]bool{
	"MESSAGE":           true,
	"PRIORITY":          true,
	"SYSLOG_IDENTIFIER": true,
	"CODE_FILE":         true,
	"CODE_LINE":         true,
	"CODE_FUNC":         true,
}

// journalHandler writes whole records (scope has folded in With attributes
// and groups) to journald's native socket, and to text when it cannot.
type journalHandler struct {
	socket   string
	level    slog.Leveler
	fallback slog.Handler

	open    sync.Once
	fd      int
	openErr error

	failing atomic.Bool // the last send failed and the switch was announced
}

func newJournalHandler(socket string, level slog.Leveler, fallback slog.Handler) *journalHandler {
	return &journalHandler{socket: socket, level: level, fallback: fallback, fd: -1}
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

// WithAttrs and WithGroup are only reached without the scope in front;
// the scope then keeps them.
func (h *journalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return newScope(h).WithAttrs(attrs)
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return newScope(h).WithGroup(name)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.send(encodeEntry(entryFields(r)))
	if err == nil {
		h.failing.Store(false)
		return nil
	}
	// Never lose a line: the text handler writes to the journal stream,
	// which systemd still reads when its socket is gone or wedged.
	if !h.failing.Swap(true) {
		note := slog.NewRecord(time.Now(), slog.LevelWarn, "journal socket unwritable, logging as text", 0)
		note.AddAttrs(slog.String("op", "journal send"), slog.String("socket", h.socket), slog.Any("err", err))
		_ = h.fallback.Handle(ctx, note) // the record below reports a text failure too
	}
	if ferr := h.fallback.Handle(ctx, r); ferr != nil {
		return errors.Join(err, ferr)
	}
	return nil
}

// send writes one datagram, or, when it is too large for one, passes it
// in a sealed memory file as journald allows.
func (h *journalHandler) send(entry []byte) error {
	h.open.Do(func() {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			h.openErr = fmt.Errorf("open journal socket: %w", err)
			return
		}
		tv := unix.NsecToTimeval(sendTimeout.Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
			unix.Close(fd)
			h.openErr = fmt.Errorf("set send timeout on journal socket: %w", err)
			return
		}
		h.fd = fd
	})
	if h.openErr != nil {
		return h.openErr
	}
	to := &unix.SockaddrUnix{Name: h.socket}
	err := unix.Sendmsg(h.fd, entry, nil, to, 0)
	if errors.Is(err, unix.EMSGSIZE) || errors.Is(err, unix.ENOBUFS) {
		err = h.sendFile(entry, to)
	}
	if err != nil {
		return fmt.Errorf("send entry to %s: %w", h.socket, err)
	}
	return nil
}

func (h *journalHandler) sendFile(entry []byte, to *unix.SockaddrUnix) error {
	fd, err := unix.MemfdCreate("kvscamd-journal", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return fmt.Errorf("create memory file for large entry: %w", err)
	}
	defer unix.Close(fd)
	for rest := entry; len(rest) > 0; {
		n, err := unix.Write(fd, rest)
		if err != nil {
			return fmt.Errorf("write large entry to memory file: %w", err)
		}
		rest = rest[n:]
	}
	// journald only accepts a memory file nobody can change any more.
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return fmt.Errorf("seal memory file of large entry: %w", err)
	}
	if err := unix.Sendmsg(h.fd, nil, unix.UnixRights(fd), to, 0); err != nil {
		return fmt.Errorf("pass memory file of large entry: %w", err)
	}
	return nil
}

// field is one journal field; the order is kept so entries read as logged.
type field struct {
	name, value string
}

// entryFields maps a whole record to journal fields: MESSAGE, PRIORITY,
// SYSLOG_IDENTIFIER, the caller as CODE_*, then one field per attribute.
func entryFields(r slog.Record) []field {
	fields := []field{
		{"MESSAGE", r.Message},
		{"PRIORITY", strconv.Itoa(priority(r.Level))},
		{"SYSLOG_IDENTIFIER", Identifier},
	}
	if r.PC != 0 {
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		if f.File != "" {
			fields = append(fields,
				field{"CODE_FILE", f.File},
				field{"CODE_LINE", strconv.Itoa(f.Line)},
				field{"CODE_FUNC", f.Function})
		}
	}
	r.Attrs(func(a slog.Attr) bool {
		fields = appendAttr(fields, "", a)
		return true
	})
	return fields
}

// priority maps slog levels to syslog priorities, so journalctl -p
// selects by the level the daemon logged at.
func priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3 // err
	case l >= slog.LevelWarn:
		return 4 // warning
	case l >= slog.LevelInfo:
		return 6 // info
	default:
		return 7 // debug
	}
}

func appendAttr(fields []field, prefix string, a slog.Attr) []field {
	v := a.Value.Resolve()
	name := fieldName(a.Key)
	if v.Kind() == slog.KindGroup {
		if a.Key != "" {
			prefix += name + "_"
		}
		for _, m := range v.Group() {
			fields = appendAttr(fields, prefix, m)
		}
		return fields
	}
	if a.Key == "" {
		return fields
	}
	full := prefix + name
	// A name must start with a letter: journald keeps a leading _ for the
	// fields it sets itself and would drop ours.
	if full[0] < 'A' || full[0] > 'Z' || reserved[full] {
		full = "ATTR_" + full
	}
	if len(full) > maxFieldName {
		full = full[:maxFieldName]
	}
	return append(fields, field{full, attrValue(v)})
}

// fieldName turns one attribute key into its part of a journal field name:
// upper case, only A-Z, 0-9 and _, then the aliases.
func fieldName(key string) string {
	b := []byte(strings.ToUpper(key))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	name := string(b)
	if alias, ok := aliases[name]; ok {
		return alias
	}
	return name
}

func attrValue(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return err.Error()
		}
	}
	return v.String()
}

// encodeEntry serializes fields in the native protocol: NAME=value lines,
// or, for a value holding a newline, the name, a newline, the value's
// length as 64-bit little endian, the value and a newline.
func encodeEntry(fields []field) []byte {
	var b []byte
	for _, f := range fields {
		b = append(b, f.name...)
		if strings.IndexByte(f.value, '\n') < 0 {
			b = append(b, '=')
			b = append(b, f.value...)
		} else {
			b = append(b, '\n')
			b = binary.LittleEndian.AppendUint64(b, uint64(len(f.value)))
			b = append(b, f.value...)
		}
		b = append(b, '\n')
	}
	return b
}
