package uapi

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/build"
	"go/constant"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// cStruct names the C struct a Go struct mirrors and the C member each
// named Go field stands for.
type cStruct struct {
	typ    reflect.Type
	name   string
	fields map[string]string
}

var cStructs = []cStruct{
	{reflect.TypeFor[Capability](), "v4l2_capability", map[string]string{
		"Driver": "driver", "Card": "card", "BusInfo": "bus_info", "Version": "version",
		"Capabilities": "capabilities", "DeviceCaps": "device_caps"}},
	{reflect.TypeFor[FmtDesc](), "v4l2_fmtdesc", map[string]string{
		"Index": "index", "Type": "type", "Flags": "flags", "Description": "description",
		"PixelFormat": "pixelformat", "MbusCode": "mbus_code"}},
	{reflect.TypeFor[PixFormat](), "v4l2_pix_format", map[string]string{
		"Width": "width", "Height": "height", "PixelFormat": "pixelformat", "Field": "field",
		"BytesPerLine": "bytesperline", "SizeImage": "sizeimage", "Colorspace": "colorspace",
		"Priv": "priv", "Flags": "flags", "YcbcrEnc": "ycbcr_enc", "Quantization": "quantization",
		"XferFunc": "xfer_func"}},
	{reflect.TypeFor[Format](), "v4l2_format", map[string]string{"Type": "type", "Fmt": "fmt"}},
	{reflect.TypeFor[Fract](), "v4l2_fract", map[string]string{"Numerator": "numerator", "Denominator": "denominator"}},
	{reflect.TypeFor[CaptureParm](), "v4l2_captureparm", map[string]string{
		"Capability": "capability", "CaptureMode": "capturemode", "TimePerFrame": "timeperframe",
		"ExtendedMode": "extendedmode", "ReadBuffers": "readbuffers"}},
	{reflect.TypeFor[StreamParm](), "v4l2_streamparm", map[string]string{"Type": "type", "Capture": "parm.capture"}},
	{reflect.TypeFor[RequestBuffers](), "v4l2_requestbuffers", map[string]string{
		"Count": "count", "Type": "type", "Memory": "memory", "Capabilities": "capabilities", "Flags": "flags"}},
	{reflect.TypeFor[Timecode](), "v4l2_timecode", map[string]string{
		"Type": "type", "Flags": "flags", "Frames": "frames", "Seconds": "seconds",
		"Minutes": "minutes", "Hours": "hours", "UserBits": "userbits"}},
	{reflect.TypeFor[Buffer](), "v4l2_buffer", map[string]string{
		"Index": "index", "Type": "type", "BytesUsed": "bytesused", "Flags": "flags", "Field": "field",
		"Timestamp": "timestamp", "Timecode": "timecode", "Sequence": "sequence", "Memory": "memory",
		"M": "m.offset", "Length": "length", "RequestFD": "request_fd"}},
	{reflect.TypeFor[QueryCtrl](), "v4l2_queryctrl", map[string]string{
		"ID": "id", "Type": "type", "Name": "name", "Minimum": "minimum", "Maximum": "maximum",
		"Step": "step", "DefaultValue": "default_value", "Flags": "flags"}},
	{reflect.TypeFor[Control](), "v4l2_control", map[string]string{"ID": "id", "Value": "value"}},
}

// extraC are layout facts that no Go field stands for one to one.
var extraC = map[string]string{
	"size:Timeval":       "sizeof(((struct v4l2_buffer *)0)->timestamp)",
	"off:Timeval.Usec":   "offsetof(struct timeval, tv_usec)",
	"size:Buffer.M":      "sizeof(((struct v4l2_buffer *)0)->m)",
	"off:Format.Fmt.pix": "offsetof(struct v4l2_format, fmt.pix)",
}

// target is a GOARCH whose layout is checked, with the C compiler that
// knows its kernel headers and the Debian packages that install them.
type target struct {
	goarch, cc, packages string
}

var targets = []target{
	{"amd64", "x86_64-linux-gnu-gcc", "gcc libc6-dev (gcc-x86-64-linux-gnu libc6-dev-amd64-cross on other hosts)"},
	{"arm64", "aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu libc6-dev-arm64-cross linux-libc-dev-arm64-cross"},
	// 32-bit ARM in its default 32-bit time_t ABI: the layout this
	// package uses there (see the package comment).
	{"arm", "arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf libc6-dev-armhf-cross linux-libc-dev-armhf-cross"},
}

// TestLayoutMatchesKernelHeaders compares, for every target, the struct
// sizes, field offsets, ioctl numbers and constants that the Go compiler
// gives this package with what the C compiler reads from
// <linux/videodev2.h>. The Go side is type-checked for each GOARCH with
// the gc compiler's sizes; for the GOARCH running the test, the compiled
// layout (reflect) and ioctl numbers are compared too, so the type-checked
// figures are known to be the compiler's.
func TestLayoutMatchesKernelHeaders(t *testing.T) {
	for _, tg := range targets {
		t.Run(tg.goarch, func(t *testing.T) {
			goVals := typeCheckedLayout(t, tg.goarch)
			cVals := kernelLayout(t, tg, keysOf(goVals))
			compare(t, "type-checked Go", goVals, "kernel headers", cVals)
			t.Logf("%d values compared; struct v4l2_buffer %d bytes, VIDIOC_DQBUF %#x, struct v4l2_format %d bytes",
				len(goVals), goVals["size:Buffer"], goVals["const:VIDIOC_DQBUF"], goVals["size:Format"])
			if tg.goarch == runtime.GOARCH {
				compare(t, "compiled Go", compiledLayout(t), "kernel headers", cVals)
			}
		})
	}
}

func keysOf(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func compare(t *testing.T, gotName string, got map[string]int64, wantName string, want map[string]int64) {
	t.Helper()
	for _, k := range keysOf(got) {
		w, ok := want[k]
		if !ok {
			t.Errorf("%s: %s has no value from the %s", k, gotName, wantName)
			continue
		}
		if got[k] != w {
			t.Errorf("%s: %s %d (%#x), %s %d (%#x)", k, gotName, got[k], got[k], wantName, w, w)
		}
	}
}

// cExpr is the C expression for a layout key.
func cExpr(t *testing.T, key string) string {
	t.Helper()
	if e, ok := extraC[key]; ok {
		return e
	}
	kind, name, _ := strings.Cut(key, ":")
	if kind == "const" {
		return name
	}
	typ, field, _ := strings.Cut(name, ".")
	for _, s := range cStructs {
		if s.typ.Name() != typ {
			continue
		}
		if kind == "size" {
			return "sizeof(struct " + s.name + ")"
		}
		return "offsetof(struct " + s.name + ", " + s.fields[field] + ")"
	}
	t.Fatalf("no C expression for %s", key)
	return ""
}

// kernelLayout compiles a C file that puts each key's value into the
// assembler output as an immediate operand, with the target's compiler
// and -S only, so nothing built for the target has to run.
func kernelLayout(t *testing.T, tg target, keys []string) map[string]int64 {
	t.Helper()
	if _, err := exec.LookPath(tg.cc); err != nil {
		t.Fatalf("%s is needed to read the %s kernel headers: apt-get install --no-install-recommends %s", tg.cc, tg.goarch, tg.packages)
	}
	var src bytes.Buffer
	src.WriteString("#include <stddef.h>\n#include <sys/time.h>\n#include <linux/videodev2.h>\n")
	src.WriteString("#define EMIT(key, val) __asm__ volatile(\"\\n@@\" key \" %0\" : : \"n\"((long long)(val)))\nvoid layout(void) {\n")
	for _, k := range keys {
		fmt.Fprintf(&src, "\tEMIT(%q, %s);\n", k, cExpr(t, k))
	}
	src.WriteString("}\n")
	dir := t.TempDir()
	cfile := filepath.Join(dir, "layout.c")
	if err := os.WriteFile(cfile, src.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tg.cc, "-S", "-o", "-", cfile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s -S %s: %v\n%s\n(the headers come with: apt-get install --no-install-recommends %s)", tg.cc, cfile, err, stderr.String(), tg.packages)
	}
	vals := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, "@@")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(rest, " ")
		// An immediate operand is printed with its target's prefix.
		v = strings.TrimLeft(v, "$#")
		n, err := strconv.ParseInt(v, 0, 64)
		if err != nil {
			t.Fatalf("%s: cannot read %q from the assembler output: %v", tg.cc, line, err)
		}
		vals[k] = n
	}
	if len(vals) != len(keys) {
		t.Fatalf("%s gave %d of %d values; output:\n%s", tg.cc, len(vals), len(keys), out)
	}
	return vals
}

// typeCheckedLayout type-checks this package's files for linux/goarch
// with the gc compiler's sizes and returns its struct layouts and the
// values of its exported constants.
func typeCheckedLayout(t *testing.T, goarch string) map[string]int64 {
	t.Helper()
	ctxt := build.Default
	ctxt.GOOS, ctxt.GOARCH, ctxt.CgoEnabled = "linux", goarch, false
	bp, err := ctxt.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, name := range bp.GoFiles {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	sizes := types.SizesFor("gc", goarch)
	if sizes == nil {
		t.Fatalf("no gc sizes for %s", goarch)
	}
	pkg, err := (&types.Config{Sizes: sizes, Importer: unsafeOnly{}}).Check("uapi", fset, files, nil)
	if err != nil {
		t.Fatalf("type-checking for %s: %v", goarch, err)
	}
	vals := map[string]int64{}
	scope := pkg.Scope()
	for _, name := range scope.Names() {
		c, ok := scope.Lookup(name).(*types.Const)
		if !ok || !c.Exported() {
			continue
		}
		v, exact := constant.Int64Val(c.Val())
		if !exact {
			t.Fatalf("%s: constant %s is not an int64", goarch, name)
		}
		vals["const:"+name] = v
	}
	for _, s := range cStructs {
		obj := scope.Lookup(s.typ.Name())
		if obj == nil {
			t.Fatalf("type %s not found", s.typ.Name())
		}
		st := obj.Type().Underlying().(*types.Struct)
		vals["size:"+obj.Name()] = sizes.Sizeof(st)
		fields := make([]*types.Var, st.NumFields())
		for i := range fields {
			fields[i] = st.Field(i)
		}
		offs := sizes.Offsetsof(fields)
		for i, f := range fields {
			if f.Name() != "_" {
				vals["off:"+obj.Name()+"."+f.Name()] = offs[i]
			}
		}
		if tv := scope.Lookup("Timeval"); tv != nil && obj.Name() == "Buffer" {
			tvs := tv.Type().Underlying().(*types.Struct)
			vals["size:Timeval"] = sizes.Sizeof(tvs)
			vals["off:Timeval.Usec"] = sizes.Offsetsof([]*types.Var{tvs.Field(0), tvs.Field(1)})[1]
			vals["size:Buffer.M"] = sizes.Sizeof(st.Field(fieldIndex(t, st, "M")).Type())
		}
		if obj.Name() == "Format" {
			vals["off:Format.Fmt.pix"] = offs[fieldIndex(t, st, "Fmt")]
		}
	}
	checkCovered(t, scope)
	return vals
}

// unsafeOnly imports the one package this package may import.
type unsafeOnly struct{}

func (unsafeOnly) Import(path string) (*types.Package, error) {
	if path == "unsafe" {
		return types.Unsafe, nil
	}
	return nil, fmt.Errorf("uapi must import nothing but unsafe, so that it builds everywhere; it imports %s", path)
}

func fieldIndex(t *testing.T, st *types.Struct, name string) int {
	t.Helper()
	for i := range st.NumFields() {
		if st.Field(i).Name() == name {
			return i
		}
	}
	t.Fatalf("no field %s", name)
	return -1
}

// checkCovered fails for an exported struct or field the cStructs table
// does not name, so that nothing added to the package goes unchecked.
func checkCovered(t *testing.T, scope *types.Scope) {
	t.Helper()
	known := map[string]cStruct{}
	for _, s := range cStructs {
		known[s.typ.Name()] = s
	}
	for _, name := range scope.Names() {
		tn, ok := scope.Lookup(name).(*types.TypeName)
		if !ok || !tn.Exported() || tn.IsAlias() {
			continue
		}
		st, ok := tn.Type().Underlying().(*types.Struct)
		if !ok {
			continue
		}
		if name == "Timeval" || name == "FormatUnion" {
			continue // checked through extraC
		}
		s, ok := known[name]
		if !ok {
			t.Errorf("struct %s is not in cStructs: add its C name and members", name)
			continue
		}
		for i := range st.NumFields() {
			if f := st.Field(i).Name(); f != "_" && s.fields[f] == "" {
				t.Errorf("field %s.%s is not in cStructs: add its C member", name, f)
			}
		}
	}
}

// compiledLayout is the layout the compiler gave this test binary, and the
// ioctl numbers as compiled.
func compiledLayout(t *testing.T) map[string]int64 {
	t.Helper()
	vals := map[string]int64{
		"size:Timeval":       int64(reflect.TypeFor[Timeval]().Size()),
		"off:Timeval.Usec":   int64(reflect.TypeFor[Timeval]().Field(1).Offset),
		"size:Buffer.M":      int64(reflect.TypeFor[uintptr]().Size()),
		"off:Format.Fmt.pix": int64(reflect.TypeFor[Format]().Field(1).Offset),
	}
	for _, s := range cStructs {
		vals["size:"+s.typ.Name()] = int64(s.typ.Size())
		for i := range s.typ.NumField() {
			if f := s.typ.Field(i); f.Name != "_" {
				vals["off:"+s.typ.Name()+"."+f.Name] = int64(f.Offset)
			}
		}
	}
	for name, v := range map[string]uintptr{
		"VIDIOC_QUERYCAP": VIDIOC_QUERYCAP, "VIDIOC_ENUM_FMT": VIDIOC_ENUM_FMT,
		"VIDIOC_G_FMT": VIDIOC_G_FMT, "VIDIOC_S_FMT": VIDIOC_S_FMT,
		"VIDIOC_REQBUFS": VIDIOC_REQBUFS, "VIDIOC_QUERYBUF": VIDIOC_QUERYBUF,
		"VIDIOC_QBUF": VIDIOC_QBUF, "VIDIOC_DQBUF": VIDIOC_DQBUF,
		"VIDIOC_STREAMON": VIDIOC_STREAMON, "VIDIOC_STREAMOFF": VIDIOC_STREAMOFF,
		"VIDIOC_G_PARM": VIDIOC_G_PARM, "VIDIOC_S_PARM": VIDIOC_S_PARM,
		"VIDIOC_G_CTRL": VIDIOC_G_CTRL, "VIDIOC_S_CTRL": VIDIOC_S_CTRL,
		"VIDIOC_QUERYCTRL": VIDIOC_QUERYCTRL,
	} {
		vals["const:"+name] = int64(v)
	}
	return vals
}

func TestString(t *testing.T) {
	for in, want := range map[string]string{"vivid\x00\x00junk": "vivid", "full": "full", "\x00": ""} {
		if got := String([]byte(in)); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}
