#!/usr/bin/env bash
# tests/install/install_test.sh — installs the build into a scratch DESTDIR
# and builds a program there from the installed headers, libraries and
# pkg-config files alone, then runs it. One check per call:
#
#   install_test.sh c-shared BUILD_DIR   C program, pkg-config crsync, libcrsync.so
#   install_test.sh c-static BUILD_DIR   the same linked with libcrsync.a
#   install_test.sh sidecar  BUILD_DIR   C++ program, pkg-config crsync-sidecar
#
# Exits 0 when the program printed "ok"; otherwise says which step failed.
set -euo pipefail
mode=$1
build=$(cd "$2" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d /tmp/crsync-install-XXXXXX)
trap 'rm -rf "$scratch"' EXIT

step() { echo "install_test ($mode): $*" >&2; }
die() { step "FAILED: $*"; exit 1; }

meson install -C "$build" --no-rebuild --quiet --destdir "$scratch/root" >"$scratch/install.log" 2>&1 \
  || { cat "$scratch/install.log" >&2; die "meson install"; }
prefix=$(meson introspect "$build" --buildoptions |
         python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="prefix"))')
libdir=$(meson introspect "$build" --buildoptions |
         python3 -c 'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"]=="libdir"))')
case $libdir in /*) ;; *) libdir=$prefix/$libdir ;; esac
root=$scratch/root
[ -f "$root$prefix/include/crsync/crsync.h" ] || die "no crsync/crsync.h under $prefix/include"
[ -d "$root$libdir/pkgconfig" ] || die "no pkgconfig directory under $libdir"

# pkg-config sees the scratch tree as the machine's (paths get $root in front).
export PKG_CONFIG_PATH=$root$libdir/pkgconfig PKG_CONFIG_SYSROOT_DIR=$root
db=$scratch/app.db
case $mode in
  c-shared)
    step "cc consumer.c \$(pkg-config --cflags --libs crsync)"
    cc -std=c11 -Wall -Werror -o "$scratch/consumer" "$here/consumer.c" \
      $(pkg-config --cflags --libs crsync) || die "compile and link"
    out=$(LD_LIBRARY_PATH=$root$libdir "$scratch/consumer" "$db") || die "run: $out"
    # It must have used the installed shared library, not a static copy.
    LD_LIBRARY_PATH=$root$libdir ldd "$scratch/consumer" >"$scratch/ldd"
    grep -q "$root$libdir/libcrsync.so" "$scratch/ldd" \
      || die "the program does not load $libdir/libcrsync.so"
    ;;
  c-static)
    step "cc consumer.c libcrsync.a \$(pkg-config --static --libs crsync)"
    [ -f "$root$libdir/libcrsync.a" ] || die "no libcrsync.a in $libdir"
    cc -std=c11 -Wall -Werror -o "$scratch/consumer" "$here/consumer.c" \
      $(pkg-config --cflags crsync) "$root$libdir/libcrsync.a" \
      $(pkg-config --static --libs-only-other --libs-only-l crsync | sed 's/-lcrsync\b//') \
      || die "compile and link"
    ldd "$scratch/consumer" >"$scratch/ldd"
    if grep -q libcrsync "$scratch/ldd"; then die "linked libcrsync.so, not the archive"; fi
    out=$("$scratch/consumer" "$db") || die "run: $out"
    ;;
  sidecar)
    step "c++ sidecar_consumer.cc \$(pkg-config --cflags --libs crsync-sidecar)"
    c++ -std=c++20 -Wall -Werror -o "$scratch/sidecar_consumer" "$here/sidecar_consumer.cc" \
      $(pkg-config --cflags --libs crsync-sidecar) || die "compile and link"
    out=$(LD_LIBRARY_PATH=$root$libdir timeout 30 "$scratch/sidecar_consumer" "$db") \
      || die "run: $out"
    ;;
  *) die "unknown mode (c-shared, c-static, sidecar)" ;;
esac
[ "$out" = ok ] || die "the program printed '$out', not 'ok'"
step "ok"
