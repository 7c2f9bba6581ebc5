#!/usr/bin/env bash
# Builds Dapr's daprd, placement and scheduler from the dapr/dapr Go module named in go.mod beside this
# script, once per version, into a cache; a second run finds them there and returns at once.
#
#   bash deploy/dapr/build/build.sh            build (or find) them; the last line is the directory
#   bash deploy/dapr/build/build.sh --if-go    the same, but only say so and succeed when Go is missing
#
# The directory: $AIRDISPLAY_DAPR_BIN if set, else ${XDG_CACHE_HOME:-~/.cache}/airdisplay/dapr/<version>.
# `airdisplay dapr local` and the tests look there too. Needs Go (go.mod's `go` line, or GOTOOLCHAIN
# fetches that toolchain) and the Go module proxy; the first build downloads ~600 MB of modules.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="$(awk '$1 == "github.com/dapr/dapr" && $2 ~ /^v/ { print $2 }' "$here/go.mod")"
[ -n "$version" ] || { echo "dapr build: no 'require github.com/dapr/dapr' line in $here/go.mod" >&2; exit 2; }
bin="${AIRDISPLAY_DAPR_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/airdisplay/dapr/$version}"
binaries=(daprd placement scheduler)

have_all() {
    local name
    for name in "${binaries[@]}"; do [ -x "$bin/$name" ] || return 1; done
    [ "$("$bin/daprd" --version 2>/dev/null)" = "${version#v}" ]
}

if have_all; then
    echo "dapr build: ${binaries[*]} ${version} already built"
    echo "$bin"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    if [ "${1:-}" = "--if-go" ]; then
        echo "dapr build: Go is not installed, so Dapr ${version} is not built; the real-daprd tests will skip"
        exit 0
    fi
    echo "dapr build: Go is needed to build Dapr ${version} (https://go.dev/doc/install)" >&2
    exit 2
fi

start=$SECONDS
cd "$here"
# go.sum is committed: the module graph is fixed, and every download is checked against it.
export GOFLAGS="-mod=readonly"
export CGO_ENABLED=0
echo "dapr build: downloading the modules of Dapr ${version} and compiling ${binaries[*]} (first time only:"
echo "dapr build: ~600 MB of modules, about 6 minutes on 2 cores)"
staging="$(mktemp -d "${TMPDIR:-/tmp}/dapr-build.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
# daprd is ours (./daprd: Dapr's runtime with only the components AirDisplay uses, see its main.go);
# placement and scheduler are Dapr's own. -v names each package as it compiles: one progress line per 250.
go build -v -trimpath \
    -ldflags "-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=${version#v}" \
    -o "$staging/" \
    ./daprd github.com/dapr/dapr/cmd/placement github.com/dapr/dapr/cmd/scheduler \
    2>&1 | awk '/^#|: error|cannot |undefined: / { print; next } { if (++n % 250 == 0) printf "dapr build:   %d packages compiled\n", n; fflush() }'
mkdir -p "$bin"
for name in "${binaries[@]}"; do mv -f "$staging/$name" "$bin/$name"; done
have_all || { echo "dapr build: the built daprd does not report version ${version#v}" >&2; exit 1; }
echo "dapr build: ${binaries[*]} ${version} built in $((SECONDS - start)) s"
echo "$bin"
