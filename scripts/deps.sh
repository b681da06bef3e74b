#!/bin/sh
# Installs the Debian packages heapscope needs to build and test, when they are
# missing. Run by `make demo` and `make test`; a no-op when all are present.
# As non-root it only reports what is missing (and the build then fails with
# the compiler's own message).
set -e
BUILD="gcc g++ make pkg-config libunwind-dev libdw-dev libelf-dev zlib1g-dev \
libprotobuf-c-dev protobuf-c-compiler libmicrohttpd-dev libcurl4-openssl-dev \
libcmocka-dev"
TEST="valgrind sqlite3 python3 git golang-go libclang-rt-14-dev clang jq curl wrk elfutils"
BENCH="hyperfine heaptrack libjemalloc2 clang time"

want="$BUILD"
case "${1:-}" in
  test) want="$BUILD $TEST" ;;
  bench) want="$BUILD $TEST $BENCH" ;;
esac

missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" = 0 ]; then
  echo "heapscope: installing missing packages:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing >/dev/null
else
  echo "heapscope: warning: missing packages:$missing — run as root or: sudo apt-get install$missing" >&2
fi
