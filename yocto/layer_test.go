// Package yocto holds the BitBake layer; this test keeps the recipe in
// step with the files it installs from the source tree.
package yocto

import (
	"crypto/md5"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestRecipeReferencesExist(t *testing.T) {
	recipe, err := os.ReadFile("meta-kvscamd/recipes-multimedia/kvscamd/kvscamd_git.bb")
	if err != nil {
		t.Fatal(err)
	}
	// Every ${S}/src/${GO_IMPORT}/PATH the recipe installs must exist.
	for _, m := range regexp.MustCompile(`\$\{S\}/src/\$\{GO_IMPORT\}/(\S+)`).FindAllSubmatch(recipe, -1) {
		if _, err := os.Stat(filepath.Join("..", string(m[1]))); err != nil {
			t.Errorf("recipe installs %s: %v", m[1], err)
		}
	}
	for _, m := range regexp.MustCompile(`SRC_URI[^"]*"[^"]*?file://([^;\s"]+)`).FindAllSubmatch(recipe, -1) {
		if _, err := os.Stat(filepath.Join("meta-kvscamd/recipes-multimedia/kvscamd/files", string(m[1]))); err != nil {
			t.Errorf("SRC_URI file %s: %v", m[1], err)
		}
	}
	// The license checksum must match the LICENSE file.
	lic, err := os.ReadFile("../LICENSE")
	if err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(lic)
	m := regexp.MustCompile(`md5=([0-9a-f]{32})`).FindSubmatch(recipe)
	if m == nil || string(m[1]) != hex.EncodeToString(sum[:]) {
		t.Errorf("LIC_FILES_CHKSUM %s does not match LICENSE (%x)", m, sum)
	}
}
