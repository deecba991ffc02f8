package ring

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kvscamd/kvscamd/internal/atomicfile"
)

// A ring has an identity, a random number chosen when it is created and
// written both into ring.id and as the first slot of every ack log. An ack
// log that is missing, or that names another identity or none, is not this
// ring's record of what was uploaded: the ring then treats every stored
// fragment as not uploaded (sending video twice beats dropping it on the
// word of a foreign log) and says so loudly, instead of quietly uploading
// everything again.

const (
	identName   = "ring.id"
	identPrefix = "kvscamd-ring "
)

// Reasons in Stats.AckLogReset.
const (
	AckLogMissing  = "missing"
	AckLogReplaced = "replaced"
)

func newIdentity() ID {
	for {
		var b [8]byte
		rand.Read(b[:])
		if id := ID(binary.LittleEndian.Uint64(b[:])); id != 0 {
			return id
		}
	}
}

// readIdentity returns the identity in dir's ring.id, 0 if there is none
// or it cannot be parsed.
func readIdentity(dir string) ID {
	b, err := os.ReadFile(filepath.Join(dir, identName))
	if err != nil {
		return 0
	}
	s, ok := strings.CutPrefix(strings.TrimSpace(string(b)), identPrefix)
	if !ok {
		return 0
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0
	}
	return ID(v)
}

func writeIdentity(dir string, id ID) error {
	return atomicfile.WriteFile(filepath.Join(dir, identName), fmt.Appendf(nil, "%s%016x\n", identPrefix, uint64(id)), 0o640)
}

// checkIdentity matches the ack log against the ring's identity (see
// above) after both were read; stored holds the recovered entries, so that
// a reset can say what will be sent again. It returns the ack state to
// apply. In a read-only view nothing is written.
func (r *Ring) checkIdentity(ident ID, acks *ackLog, ast ackState, created bool, stored []entry) (ackState, error) {
	ro := r.opts.ReadOnly
	reset := ""
	// ring.id is written only once the log names the identity too, so
	// that a crash in between cannot make the log look foreign.
	writeID := true
	switch {
	case created:
		// A new ring, or one whose log was deleted: only the latter has
		// fragments (every ring since the first has had a log).
		if len(stored) > 0 {
			reset = AckLogMissing
		}
	case ast.ident == ident:
	case ast.ident == 0 && readIdentity(r.dir) == 0:
		// A ring from before identities: adopt its log.
		if !ro {
			acks.ident = ident // written by every checkpoint from now on
			_, err := acks.append(ackSlot{Kind: 'I', ID: ident})
			switch {
			case errors.Is(err, errAckLogFull):
				// The checkpoint at the end of recovery writes it; the
				// next Open adopts it from the log.
				writeID = false
			case err != nil:
				return ast, fmt.Errorf("ring: write identity into the ack log in %s: %w", r.dir, err)
			}
		}
	case ast.ident != 0 && readIdentity(r.dir) == 0:
		// ring.id was lost (or a crash came between creating the log and
		// it): the log knows the identity.
		ident = ast.ident
	case ast.ident == 0 && ast.damaged > 0:
		// The identity slot itself may be the damaged one: trusting the
		// log risks nothing that the damage did not already.
		r.log.Warn("ring: ack log without a readable identity; keeping its acknowledgements", "log", filepath.Join(r.dir, ackLogName))
		if !ro {
			acks.ident = ident
		}
	default:
		if len(stored) > 0 {
			reset = AckLogReplaced
		}
		ast = ackState{}
		if !ro {
			acks.ident = ident
			if err := acks.replace(nil); err != nil {
				return ast, fmt.Errorf("ring: replace the foreign ack log in %s: %w; %s", r.dir, err, fixFor(err, r.dir))
			}
			r.ackAlloc.Store(acks.alloc)
		}
	}
	if !ro && writeID && readIdentity(r.dir) != ident {
		if err := writeIdentity(r.dir, ident); err != nil {
			return ast, fmt.Errorf("ring: write %s in %s: %w; %s", identName, r.dir, err, fixFor(err, r.dir))
		}
	}
	if reset != "" {
		r.st.AckLogReset = reset
		what := "was deleted"
		if reset == AckLogReplaced {
			what = "belongs to another ring or was replaced"
		}
		r.log.Error("ring: "+ackLogName+" "+what+"; the record of what was uploaded is gone, so EVERY stored fragment counts as not uploaded and will be SENT AGAIN",
			"log", filepath.Join(r.dir, ackLogName), "fragments", len(stored),
			"from", stored[0].start(), "to", stored[len(stored)-1].end())
	}
	return ast, nil
}
