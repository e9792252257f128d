#!/usr/bin/env bash
# Builds Benthos (MIT, github.com/benthosdev/benthos/v4) from the Go module proxy into
# $SLUICE_CACHE/benthos-<version>/bin/benthos, for `make bench`. Idempotent and locked: a finished build is
# reused, and two concurrent runs build it once. Prints the binary's path on stdout.
#
# Benthos's own go.mod replaces github.com/99designs/keyring with a fork; replaces only apply in the main
# module, so the wrapper module generated under the cache carries the same replace. Two quirks of building a
# 2024 release with today's Go: `go mod tidy` cannot resolve some test-only dependencies of dependencies
# (inet.af/peercred is gone from the proxy), hence `-e`; and parquet-go links to a runtime symbol, which
# Go >= 1.23 refuses unless the linker is given -checklinkname=0 (older linkers lack the flag).
. "$(dirname "$0")/lib.sh"
BENTHOS_VERSION="${BENTHOS_VERSION:-4.27.0}"
export GOFLAGS="${GOFLAGS:--buildvcs=false} -trimpath"
export CGO_ENABLED=0
OUT="$SLUICE_CACHE/benthos-$BENTHOS_VERSION-bench"  # -bench: only the components the benchmark uses

build_benthos() {
  if [ -f "$OUT/.done" ]; then return 0; fi
  log "building Benthos v$BENTHOS_VERSION (cold: many minutes on 2 cores; cached afterwards)"
  local started; started=$(date +%s)
  local mod="$OUT/src"; rm -rf "$mod"; mkdir -p "$mod" "$OUT/bin"
  (
    cd "$mod"
    cat >go.mod <<GOMOD
module sluice.dev/hack/benthos

go 1.22

require github.com/benthosdev/benthos/v4 v$BENTHOS_VERSION

replace github.com/99designs/keyring => github.com/Jeffail/keyring v1.2.3
GOMOD
    # Only the components the benchmark runs (kafka_franz in, a bloblang mapping, cassandra out, Prometheus
    # metrics): the same code for them as the full release binary, without compiling (and fetching) the
    # clients of some fifty other systems, which took most of a cold build.
    cat >main.go <<'GO'
package main

import (
	"context"

	"github.com/benthosdev/benthos/v4/public/service"

	_ "github.com/benthosdev/benthos/v4/public/components/cassandra"
	_ "github.com/benthosdev/benthos/v4/public/components/kafka"
	_ "github.com/benthosdev/benthos/v4/public/components/prometheus"
	_ "github.com/benthosdev/benthos/v4/public/components/pure"
)

func main() { service.RunCLI(context.Background()) }
GO
    go mod tidy -e 2>"$OUT/tidy.log" || true  # resolves go.sum; the unresolvable test-only modules are noted there
    local cli=github.com/benthosdev/benthos/v4/internal/cli
    local ld="-s -w -X $cli.Version=$BENTHOS_VERSION -X $cli.DateBuilt=$(date -u +%F)"
    if [[ "$(go tool link -help 2>&1)" == *checklinkname* ]]; then ld+=" -checklinkname=0"; fi
    go build -ldflags "$ld" -o "$OUT/bin/benthos.tmp" .
    mv "$OUT/bin/benthos.tmp" "$OUT/bin/benthos"
  )
  echo "$(( $(date +%s) - started ))" >"$OUT/build-seconds"
  touch "$OUT/.done"
  log "built Benthos v$BENTHOS_VERSION in $(cat "$OUT/build-seconds")s"
}

with_lock "benthos-$BENTHOS_VERSION" build_benthos
echo "$OUT/bin/benthos"
