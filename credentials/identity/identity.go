// Package identity keeps the device identity that fleet provisioning
// gives a camera: its thing name, its certificate and the private key that
// never leaves it.
//
// The identity lives in one directory (mode 0700). Each certificate
// generation is a subdirectory holding the key (0600), the certificate and
// identity.json; the symlink "current" names the generation in use.
// Replacing the symlink is one rename, so a reader that opens
// current/device.pem.crt and current/device.pem.key always gets a matching
// pair, and a power cut leaves either the old identity or the new one.
//
// Provisioning is several round trips with the cloud; what it must not
// redo after a crash (the private key, the certificate the cloud already
// issued with its one-hour ownership token) waits in the "pending"
// subdirectory until the generation is committed.
package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kvscamd/kvscamd/internal/atomicfile"
)

// File names inside a generation (and inside pending).
const (
	CertName     = "device.pem.crt"
	KeyName      = "device.pem.key"
	metaName     = "identity.json"
	currentName  = "current"
	pendingName  = "pending"
	issuedName   = "issued.json"
	generationPx = "gen-"
)

// Modes the store enforces: the key is the device's secret.
const (
	DirMode  fs.FileMode = 0o700
	KeyMode  fs.FileMode = 0o600
	CertMode fs.FileMode = 0o644
	MetaMode fs.FileMode = 0o644
)

// ErrNotProvisioned is returned by Load when no identity was committed yet.
var ErrNotProvisioned = errors.New("identity: not provisioned yet")

// Identity is what RegisterThing and the certificate tell the device.
type Identity struct {
	ThingName     string `json:"thing_name"`
	CertificateID string `json:"certificate_id"`
	// DeviceConfiguration is the template's deviceConfiguration, kept
	// as the cloud sent it.
	DeviceConfiguration map[string]any `json:"device_configuration,omitempty"`
	Template            string         `json:"template"`
	NotBefore           time.Time      `json:"not_before"`
	NotAfter            time.Time      `json:"not_after"`
	ProvisionedAt       time.Time      `json:"provisioned_at"`
	// Generation is the subdirectory this identity was loaded from.
	Generation string `json:"-"`
}

// Issued is a certificate the cloud created from our CSR but that is not
// registered yet: with its ownership token, RegisterThing can still
// complete within the token's lifetime, after a restart too.
type Issued struct {
	CertificateID  string    `json:"certificate_id"`
	CertificatePEM string    `json:"certificate_pem"`
	OwnershipToken string    `json:"ownership_token"`
	ObtainedAt     time.Time `json:"obtained_at"`
}

// OwnershipTokenLifetime is how long AWS IoT honours a
// certificateOwnershipToken; after it the unregistered certificate is
// deleted by the service.
const OwnershipTokenLifetime = time.Hour

// Usable says whether the token can still be presented at now, leaving
// margin for the round trip.
func (is Issued) Usable(now time.Time, margin time.Duration) bool {
	return is.OwnershipToken != "" && now.Before(is.ObtainedAt.Add(OwnershipTokenLifetime-margin))
}

// Store is an identity directory.
type Store struct{ Dir string }

// CertFile and KeyFile are the paths the daemon's TLS clients read: they
// follow the current generation.
func (s Store) CertFile() string { return filepath.Join(s.Dir, currentName, CertName) }
func (s Store) KeyFile() string  { return filepath.Join(s.Dir, currentName, KeyName) }

func (s Store) pending(name string) string { return filepath.Join(s.Dir, pendingName, name) }

// Load returns the committed identity, or ErrNotProvisioned.
func (s Store) Load() (*Identity, error) {
	target, err := os.Readlink(filepath.Join(s.Dir, currentName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotProvisioned
	}
	if err != nil {
		return nil, fmt.Errorf("identity: %s: %w", s.Dir, err)
	}
	data, err := os.ReadFile(filepath.Join(s.Dir, target, metaName))
	if err != nil {
		return nil, fmt.Errorf("identity: read %s: %w", filepath.Join(s.Dir, target, metaName), err)
	}
	var id Identity
	if err := json.Unmarshal(data, &id); err != nil {
		return nil, fmt.Errorf("identity: %s: %w", filepath.Join(s.Dir, target, metaName), err)
	}
	if id.ThingName == "" {
		return nil, fmt.Errorf("identity: %s has no thing name; remove %s to provision again", filepath.Join(s.Dir, target, metaName), filepath.Join(s.Dir, currentName))
	}
	id.Generation = target
	return &id, nil
}

// ensure creates the directory (and pending) with DirMode and corrects the
// mode of one that exists: a key directory others can list is refused by
// no one, so the store fixes it rather than complain at every start.
func (s Store) ensure(sub string) error {
	dir := s.Dir
	if sub != "" {
		dir = filepath.Join(s.Dir, sub)
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fmt.Errorf("identity: create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, DirMode); err != nil {
		return fmt.Errorf("identity: chmod %s: %w", dir, err)
	}
	return nil
}

// PendingKey returns the private key waiting to be certified, creating
// it with gen on first use. The same key is used by every attempt until a
// generation is committed, so a certificate issued before a crash still
// matches it.
func (s Store) PendingKey(gen func() ([]byte, error)) ([]byte, error) {
	if err := s.ensure(""); err != nil {
		return nil, err
	}
	if err := s.ensure(pendingName); err != nil {
		return nil, err
	}
	path := s.pending(KeyName)
	data, err := os.ReadFile(path)
	if err == nil && len(data) > 0 {
		return data, os.Chmod(path, KeyMode)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("identity: read %s: %w", path, err)
	}
	data, err = gen()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(path, data, KeyMode); err != nil {
		return nil, fmt.Errorf("identity: write %s: %w", path, err)
	}
	return data, nil
}

// SaveIssued records a certificate the cloud issued for the pending key.
func (s Store) SaveIssued(is Issued) error {
	data, err := json.MarshalIndent(is, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(s.pending(issuedName), data, KeyMode); err != nil {
		return fmt.Errorf("identity: write %s: %w", s.pending(issuedName), err)
	}
	return nil
}

// LoadIssued returns the recorded certificate, or ok = false.
func (s Store) LoadIssued() (is Issued, ok bool, err error) {
	data, err := os.ReadFile(s.pending(issuedName))
	if errors.Is(err, fs.ErrNotExist) {
		return Issued{}, false, nil
	}
	if err != nil {
		return Issued{}, false, fmt.Errorf("identity: read %s: %w", s.pending(issuedName), err)
	}
	if err := json.Unmarshal(data, &is); err != nil {
		// A record that cannot be read only costs a new CSR.
		return Issued{}, false, nil
	}
	return is, true, nil
}

// DropIssued forgets a recorded certificate (its token expired, or the
// cloud refused it), keeping the pending key.
func (s Store) DropIssued() error {
	err := os.Remove(s.pending(issuedName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("identity: %w", err)
	}
	return nil
}

// Commit makes id, with certPEM and the pending key, the current identity:
// a new generation directory is written and synced, then "current" is
// switched to it with one rename. The previous generation is kept (a TLS
// client may be reading it this instant); older ones are removed.
func (s Store) Commit(id Identity, certPEM []byte) error {
	key, err := os.ReadFile(s.pending(KeyName))
	if err != nil {
		return fmt.Errorf("identity: commit: the pending key: %w", err)
	}
	prev, _ := os.Readlink(filepath.Join(s.Dir, currentName))
	gen := fmt.Sprintf("%s%d", generationPx, time.Now().UnixNano())
	dir := filepath.Join(s.Dir, gen)
	if err := os.Mkdir(dir, DirMode); err != nil {
		return fmt.Errorf("identity: commit: %w", err)
	}
	meta, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode fs.FileMode
	}{{KeyName, key, KeyMode}, {CertName, certPEM, CertMode}, {metaName, meta, MetaMode}} {
		if err := atomicfile.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("identity: commit: %w", err)
		}
	}
	link := filepath.Join(s.Dir, ".current.tmp")
	_ = os.Remove(link)
	if err := os.Symlink(gen, link); err != nil {
		return fmt.Errorf("identity: commit: %w", err)
	}
	if err := os.Rename(link, filepath.Join(s.Dir, currentName)); err != nil {
		return fmt.Errorf("identity: commit: %w", err)
	}
	if err := atomicfile.SyncDir(s.Dir); err != nil {
		return fmt.Errorf("identity: commit: %w", err)
	}
	// The generation is durable: what waited for it can go.
	if err := os.RemoveAll(filepath.Join(s.Dir, pendingName)); err != nil {
		return fmt.Errorf("identity: commit: %w", err)
	}
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, generationPx) && n != gen && n != prev {
			_ = os.RemoveAll(filepath.Join(s.Dir, n))
		}
	}
	return nil
}
