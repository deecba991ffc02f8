SUMMARY = "Camera to Amazon Kinesis Video Streams uploader with a crash-safe ring buffer"
DESCRIPTION = "kvscamd captures H.264 from V4L2 or an encoder process, cuts it \
into Matroska fragments, keeps them in an on-disk ring buffer and uploads them \
to Kinesis Video Streams with credentials from the AWS IoT credentials provider."
HOMEPAGE = "https://github.com/kvscamd/kvscamd"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://src/${GO_IMPORT}/LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

SRC_URI = "git://github.com/kvscamd/kvscamd.git;protocol=https;branch=main \
           file://kvscamd.toml \
          "
SRCREV = "${AUTOREV}"
PV = "0.1+git${SRCPV}"

GO_IMPORT = "github.com/kvscamd/kvscamd"
GO_INSTALL = "${GO_IMPORT}/daemon"
# The V4L2 driver binds the kernel's UAPI headers through cgo; the rest of
# the program is pure Go.
export CGO_ENABLED = "1"
GO_LINKSHARED = ""
GOBUILDFLAGS:append = " -trimpath"

# Module downloads happen in do_compile; allow the network there, or
# vendor the modules (go mod vendor) and drop this line.
do_compile[network] = "1"

inherit go-mod systemd useradd

DEPENDS += "linux-libc-headers"
RDEPENDS:${PN} += "ca-certificates"

USERADD_PACKAGES = "${PN}"
USERADD_PARAM:${PN} = "--system --home-dir /var/lib/kvscamd --no-create-home \
                       --shell /sbin/nologin --groups video --user-group kvscamd"

SYSTEMD_SERVICE:${PN} = "kvscamd.service"
SYSTEMD_AUTO_ENABLE = "enable"

do_install:append() {
    # go-mod installs the main package under its directory name.
    mv ${D}${bindir}/daemon ${D}${bindir}/kvscamd

    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/src/${GO_IMPORT}/systemd/kvscamd.service ${D}${systemd_system_unitdir}/
    install -d ${D}${nonarch_libdir}/tmpfiles.d
    install -m 0644 ${S}/src/${GO_IMPORT}/systemd/kvscamd.tmpfiles.conf ${D}${nonarch_libdir}/tmpfiles.d/kvscamd.conf

    install -d -m 0750 ${D}${sysconfdir}/kvscamd/certs
    install -m 0640 ${WORKDIR}/kvscamd.toml ${D}${sysconfdir}/kvscamd/kvscamd.toml
    chown -R root:kvscamd ${D}${sysconfdir}/kvscamd
}

FILES:${PN} += "${systemd_system_unitdir}/kvscamd.service \
                ${nonarch_libdir}/tmpfiles.d/kvscamd.conf"
CONFFILES:${PN} = "${sysconfdir}/kvscamd/kvscamd.toml"
