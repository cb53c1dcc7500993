#!/bin/sh
# Install what granary needs to build and test, from Debian's packages, if
# missing. Idempotent: does nothing when everything is there.
set -e
PKGS="cmake ninja-build pkg-config gcc make clang clang-format
liburing-dev libevent-dev libcurl4-openssl-dev libsqlite3-dev sqlite3 libyaml-dev libcmocka-dev
libfabric-dev libfabric-bin rdma-core libibverbs-dev librdmacm-dev
libxxhash-dev libssl-dev libexpat1-dev libjansson-dev libsystemd-dev
nginx python3 python3-numpy python3-pil python3-torch python3-torchvision
valgrind dpkg-dev systemd tmux"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "granary: installing:$missing"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	$SUDO apt-get update -q
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi
