# Packaging.cmake - the Debian package of granary, built with `cpack -G DEB`
# in a build directory.
#
# One package, "granary": granaryd, the granary CLI, libgranary (with its
# header and pkg-config file), the LD_PRELOAD shim, the systemd unit, the
# sysusers.d and tmpfiles.d entries, /etc/granary/granary.yaml (a conffile:
# dpkg keeps local edits on upgrade), manual pages and documentation.
# Depends is computed from the binaries by dpkg-shlibdeps (package dpkg-dev).
#
# The maintainer scripts create the granary user and its directories and
# tell systemd about the unit. They do not enable or start granaryd: the
# example configuration must be edited for the node first (docs/operations.md).

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "granary")
set(CPACK_PACKAGE_VENDOR "granary")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "granary maintainers <granary@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "per-node caching tier for AI training data in front of a NAS or object store")
set(CPACK_PACKAGE_DESCRIPTION
  "granaryd stages the files training jobs read on the node's local disk,\n\
tracks them in SQLite with an eviction policy aware of shuffled epochs, and\n\
hands cache-file descriptors to trainers over a local socket. The\n\
LD_PRELOAD shim (libgranary-preload.so) lets unmodified trainers read\n\
through the cache and falls back to the original files when the daemon is\n\
down; the granary command pre-warms datasets and reports the cache's state.")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_PACKAGE_NAME "granary")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SECTION "admin")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# useradd for the maintainer scripts where systemd-sysusers is absent
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# Maintainer scripts and conffiles, written into the build directory.
set(granary_deb_dir ${CMAKE_BINARY_DIR}/debian)
file(MAKE_DIRECTORY ${granary_deb_dir})

file(WRITE ${granary_deb_dir}/conffiles "/etc/granary/granary.yaml\n")

file(WRITE ${granary_deb_dir}/postinst [=[#!/bin/sh
# granary postinst: the granary user and group, the directories, the unit.
set -e
if [ "$1" = configure ]; then
	if command -v systemd-sysusers >/dev/null 2>&1; then
		systemd-sysusers granary.conf
	elif ! getent passwd granary >/dev/null; then
		getent group granary >/dev/null || groupadd --system granary
		useradd --system --gid granary --home-dir /var/cache/granary \
			--no-create-home --shell /usr/sbin/nologin \
			--comment "granary cache daemon" granary
	fi
	if command -v systemd-tmpfiles >/dev/null 2>&1; then
		systemd-tmpfiles --create granary.conf || true
	else
		install -d -m 0700 -o granary -g granary /var/cache/granary
		install -d -m 0750 -o granary -g granary /var/log/granary
	fi
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload || true
		# an upgrade restarts a running daemon; the cache survives restarts
		if [ -n "$2" ] && systemctl is-active --quiet granaryd.service; then
			systemctl restart granaryd.service || true
		fi
	fi
fi
exit 0
]=])

file(WRITE ${granary_deb_dir}/prerm [=[#!/bin/sh
# granary prerm: stop the daemon before its files go away (not on upgrade).
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop granaryd.service || true
	systemctl disable granaryd.service >/dev/null 2>&1 || true
fi
exit 0
]=])

file(WRITE ${granary_deb_dir}/postrm [=[#!/bin/sh
# granary postrm: forget the unit; on purge, drop the cache and logs too.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
if [ "$1" = purge ]; then
	rm -rf /var/cache/granary /var/log/granary /run/granary
fi
exit 0
]=])

file(CHMOD ${granary_deb_dir}/postinst ${granary_deb_dir}/prerm ${granary_deb_dir}/postrm
  PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE
  WORLD_READ WORLD_EXECUTE)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${granary_deb_dir}/conffiles ${granary_deb_dir}/postinst ${granary_deb_dir}/prerm
  ${granary_deb_dir}/postrm)

# granary.pc is configured with the prefix of the build (/usr/local by
# default), while cpack installs under /usr: write the prefix actually
# installed to into the installed copy. A no-op for a plain install.
file(WRITE ${granary_deb_dir}/fix-pc-prefix.cmake
  "set(pc \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig/granary.pc\")\n"
  [=[
if(EXISTS "${pc}")
  file(READ "${pc}" text)
  string(REGEX REPLACE "(^|\n)prefix=[^\n]*" "\\1prefix=${CMAKE_INSTALL_PREFIX}" text "${text}")
  file(WRITE "${pc}" "${text}")
endif()
]=])
install(SCRIPT ${granary_deb_dir}/fix-pc-prefix.cmake)

# Only the files install() names; never the build or source trees.
set(CPACK_SOURCE_IGNORE_FILES "/build[^/]*/;/\\\\.git/;__pycache__")

include(CPack)
