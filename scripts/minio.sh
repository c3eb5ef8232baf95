#!/usr/bin/env bash
# Builds the MinIO server that archive/s3's tests run against, once, into
# ${MAILVAULT_CACHE:-$HOME/.cache/mailvault}/bin/minio, and prints its path.
# Later runs reuse the binary while its recorded version matches. The
# build (a throwaway module, since minio's go.mod is not installable with
# `go install pkg@version`) takes about four minutes on two cores.
set -euo pipefail

version=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
cache=${MAILVAULT_CACHE:-$HOME/.cache/mailvault}
bin=$cache/bin/minio
mkdir -p "$cache/bin"

current() { [ -x "$bin" ] && [ "$(cat "$bin.version" 2>/dev/null)" = "$version" ]; }

if ! current; then
  # One build at a time; a second caller waits and then reuses it.
  exec 9>"$cache/bin/.minio.lock"
  flock 9
  if ! current; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    echo "minio.sh: building MinIO $version (a few minutes, once)" >&2
    (
      cd "$work"
      export GOWORK=off GOFLAGS="-mod=mod -buildvcs=false"
      go mod init minio-build >/dev/null 2>&1
      go get "github.com/minio/minio@$version" >/dev/null 2>&1
      go build -trimpath -ldflags=-s -o "$bin.tmp" github.com/minio/minio
    ) >&2
    mv -f "$bin.tmp" "$bin"
    echo "$version" >"$bin.version"
  fi
fi
echo "$bin"
