#!/usr/bin/env bash
# Runs mailvault's whole test suite. On a fresh Debian machine it first
# installs the real tools the tests drive (age and zstd CLIs for the
# by-hand format test, mail clients for the server tests).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use, by the command that proves each is there.
declare -A pkgs=(
  [age]=age [zstd]=zstd [restic]=restic [swaks]=swaks [curl]=curl
  [python3]=python3 [mbsync]=isync [openssl]=openssl
  [zfs-fuse]=zfs-fuse [testssl]=testssl.sh
  # imaptest (mailserver/imapd's TestImaptestCompliance), built by
  # ../shared/imaptest/build.sh: its tool chain, and libdovecot from
  # dovecot-core, which build.sh does not install itself.
  [dovecot]=dovecot-core [autoconf]=autoconf [automake]=automake
  [libtoolize]=libtool [pkg-config]=pkg-config [make]=make [gcc]=gcc
)
missing=()
for cmd in "${!pkgs[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkgs[$cmd]}")
done
[ -e /usr/include/dovecot/lib.h ] || missing+=(dovecot-dev)
# swaks speaks TLS only through Perl's Net::SSLeay and IO::Socket::SSL,
# which it merely recommends (and --no-install-recommends leaves out).
perl -MNet::SSLeay -MIO::Socket::SSL -e1 >/dev/null 2>&1 ||
  missing+=(libnet-ssleay-perl libio-socket-ssl-perl)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
    exit 1
  fi
  echo "test.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The S3 backend's tests run against a real MinIO server, built once into
# the cache (minutes the first time, nothing afterwards).
MAILVAULT_MINIO=$(scripts/minio.sh)
export MAILVAULT_MINIO

go vet ./...
go test -count=1 -timeout 20m "$@" ./...
# The IMAP server's lock order under the race detector: many sessions and
# deliveries on one mailbox, then a fresh client must be served.
go test -race -count=2 -timeout 10m -run 'TestConcurrentCommandsNoDeadlock' ./mailserver/imapd
