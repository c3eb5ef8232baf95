#!/usr/bin/env bash
# imaptest.sh: Dovecot's imaptest (compliance tests and stress profiles)
# against mailvault's IMAP server and against Dovecot 2.3 (Debian's
# dovecot-imapd), side by side in one run: same machine, same certificate
# (mailvault's self-signed one), same users with the same argon2id password
# hashes (Dovecot's ARGON2ID scheme reads mailvault's PHC strings), implicit
# TLS on 127.0.0.1 for both. Prints a markdown table for docs/PERFORMANCE.md.
#
# Usage (as root, on Debian 12; installs dovecot-core and dovecot-imapd with
# apt-get when missing, without starting their system instance):
#   bash bench/mailserver/imaptest.sh
#   IMAPTEST_SECS=5 bash bench/mailserver/imaptest.sh          # smoke run
#
# imaptest is not a Debian package. From the project root,
# ../shared/imaptest/build.sh builds the exact version the figures were made
# with (Dovecot's imaptest, release-2.3 branch, two fixes for Debian 12's
# dovecot-dev) and prints the binary's path; this script runs it. Where
# ../shared is absent, build it yourself and point IMAPTEST at it:
#   apt-get install dovecot-dev dovecot-core autoconf automake libtool pkg-config make gcc
#   git clone -b release-2.3 https://github.com/dovecot/imaptest && cd imaptest
#   ./autogen.sh && ./configure --with-dovecot=/usr/lib/dovecot && make
#   IMAPTEST=$PWD/src/imaptest bash bench/mailserver/imaptest.sh
# (Debian 12's dovecot-dev 2.3.19 carries a security update that gave
# imap_parser_create a 4th argument: if the build stops there, add ", NULL"
# to the calls in src/. The compliance tests are read from src/tests beside
# the binary.)
#
# Environment:
#   IMAPTEST              the imaptest binary (default: built by ../shared/imaptest/build.sh)
#   IMAPTEST_TESTS        its compliance tests (default: tests/ beside the binary)
#   IMAPTEST_SECS         seconds of each stress profile (default 20)
#   IMAPTEST_CLIENTS      concurrent stress clients (default 10)
#   IMAPTEST_USERS        stress users u1..uN (default 10)
#   IMAPTEST_MSGS         target messages per mailbox (default 200)
#   IMAPTEST_MSG_SIZE     average body size of the messages APPENDed (default 4096)
#   IMAPTEST_PORT_BASE    first of the loopback TCP ports used (default 24600)
#   IMAPTEST_SKIP_STRESS  1 runs the compliance tests only
#   IMAPTEST_SKIP_COMPLIANCE  1 runs the stress profiles (and append) only
#   IMAPTEST_PROFILES     the stress profiles to run (default "default read-mostly")
#   IMAPTEST_DOVECOT_AUTH_CACHE  1 gives Dovecot an auth cache like mailvault's
#                         login cache (auth_cache_size 10M, auth_cache_ttl 60 s);
#                         default 0: Dovecot's defaults, no auth cache
#   IMAPTEST_APPEND_MSGS  messages APPENDed one by one in the append phase
#                         (default 2000, at most IMAPTEST_SECS seconds; 0 skips it)
#   IMAPTEST_APPEND_ROUNDS  rounds of the append phase (default 2): each round
#                         runs mailvault then Dovecot, each on a fresh instance,
#                         so that rounds alternate them (ABAB) and a change in
#                         the machine's load falls on both
#   MAILVAULT_BENCH_DIR   work and report directory (default /var/tmp/mailvault-bench)
#   MAILVAULT_BIN         use this mailvault binary instead of building one
#   BENCH_KEEP            1 keeps the work directory (configs, logs, imaptest output)
#
# The stress profiles (each run against a fresh set of mailboxes):
#   default       imaptest's default command mix (LOGIN/LOGOUT, SELECT,
#                 FETCH, STORE, EXPUNGE, APPEND, ...)
#   read-mostly   logout=0 store=0 delete=0 expunge=0: sessions stay logged
#                 in and mostly SELECT, FETCH, LIST, STATUS
#   append        bench/mailserver/append.py (python3 imaplib, implicit TLS)
#                 APPENDs the generated mails one by one, each with a date,
#                 into a new folder, as a mail import does
# Commands/s is the sum of imaptest's "Totals" row over the run's seconds;
# errors are imaptest's "Error:" lines (protocol violations it noticed,
# failed commands, disconnects).
set -euo pipefail

IMAPTEST_SECS=${IMAPTEST_SECS:-20}
IMAPTEST_CLIENTS=${IMAPTEST_CLIENTS:-10}
IMAPTEST_USERS=${IMAPTEST_USERS:-10}
IMAPTEST_MSGS=${IMAPTEST_MSGS:-200}
IMAPTEST_MSG_SIZE=${IMAPTEST_MSG_SIZE:-4096}
IMAPTEST_PORT_BASE=${IMAPTEST_PORT_BASE:-24600}
IMAPTEST_SKIP_STRESS=${IMAPTEST_SKIP_STRESS:-0}
IMAPTEST_SKIP_COMPLIANCE=${IMAPTEST_SKIP_COMPLIANCE:-0}
IMAPTEST_DOVECOT_AUTH_CACHE=${IMAPTEST_DOVECOT_AUTH_CACHE:-0}
IMAPTEST_PROFILES=${IMAPTEST_PROFILES:-default read-mostly}
IMAPTEST_APPEND_MSGS=${IMAPTEST_APPEND_MSGS:-2000}
IMAPTEST_APPEND_ROUNDS=${IMAPTEST_APPEND_ROUNDS:-2}
BENCH_DIR=${MAILVAULT_BENCH_DIR:-/var/tmp/mailvault-bench}
BENCH_KEEP=${BENCH_KEEP:-0}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

die() { echo "imaptest.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

[[ $(id -u) == 0 ]] || die "run as root: it installs packages and runs Dovecot"
for n in IMAPTEST_SECS IMAPTEST_CLIENTS IMAPTEST_USERS IMAPTEST_MSGS IMAPTEST_MSG_SIZE IMAPTEST_PORT_BASE IMAPTEST_APPEND_ROUNDS; do
	[[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, not '${!n}'"
done

# --- imaptest --------------------------------------------------------------

if [[ -z ${IMAPTEST:-} ]]; then
	build=$REPO_ROOT/../shared/imaptest/build.sh
	# In a git worktree, ../shared is beside the main checkout.
	if [[ ! -x $build ]] && common=$(git -C "$REPO_ROOT" rev-parse --path-format=absolute --git-common-dir 2>/dev/null); then
		[[ -x $(dirname "$(dirname "$common")")/shared/imaptest/build.sh ]] && build=$(dirname "$(dirname "$common")")/shared/imaptest/build.sh
	fi
	[[ -x $build ]] || die "no imaptest: $build is absent. Build Dovecot's imaptest (release-2.3) and set IMAPTEST to its binary; see the comment at the top of $0"
	log "building imaptest ($build)"
	IMAPTEST=$("$build") || die "$build failed"
fi
[[ -x $IMAPTEST ]] || die "IMAPTEST=$IMAPTEST is not executable"
IMAPTEST_TESTS=${IMAPTEST_TESTS:-$(dirname "$IMAPTEST")/tests}
[[ -d $IMAPTEST_TESTS ]] || die "no compliance tests in $IMAPTEST_TESTS (set IMAPTEST_TESTS)"

# --- packages --------------------------------------------------------------

missing=()
[[ -x /usr/sbin/dovecot && -e /usr/lib/dovecot/libdovecot.so.0 ]] || missing+=(dovecot-core)
[[ -x /usr/lib/dovecot/imap ]] || missing+=(dovecot-imapd)
if ((${#missing[@]} > 0)); then
	log "installing ${missing[*]}"
	# policy-rc.d keeps the package from starting its system-wide daemon.
	own_policy=0
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		own_policy=1
	fi
	rc=0
	{ DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }; } || rc=$?
	((own_policy == 0)) || rm -f /usr/sbin/policy-rc.d
	((rc == 0)) || die "apt-get install ${missing[*]} failed"
fi
export LD_LIBRARY_PATH=/usr/lib/dovecot${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# --- work directory and cleanup --------------------------------------------

mkdir -p "$BENCH_DIR"
exec 9>"$BENCH_DIR/.imaptest.lock"
if ! flock -n 9; then
	log "waiting for another imaptest run using $BENCH_DIR"
	flock 9
fi
W=$(mktemp -d "$BENCH_DIR/imaptest.XXXXXX")
chmod 755 "$W"
PIDS=()
DC_PIDFILES=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	local p f
	for f in "${DC_PIDFILES[@]}"; do [[ -f $f ]] && kill "$(cat "$f")" 2>/dev/null; done
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	for _ in $(seq 50); do
		local alive=0
		for f in "${DC_PIDFILES[@]}"; do [[ -f $f ]] && kill -0 "$(cat "$f" 2>/dev/null)" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	if [[ $BENCH_KEEP == 1 || $rc != 0 ]]; then
		echo "imaptest.sh: kept work directory $W (imaptest output: $W/*.out; logs: $W/*/*.log)" >&2
	else
		rm -rf "$W"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n ${MAILVAULT_BIN:-} ]]; then
	MV=$MAILVAULT_BIN
	[[ -x $MV ]] || die "MAILVAULT_BIN=$MV is not executable"
else
	log "building mailvault"
	MV=$W/mailvault
	(cd "$REPO_ROOT" && go build -o "$MV" ./cmd/mailvault) || die "go build ./cmd/mailvault failed"
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {
	for _ in $(seq 300); do
		port_free "$1" || return 0
		sleep 0.1
	done
	tail -n 20 "$3" >&2 || true
	die "$2 did not listen on 127.0.0.1:$1"
}
next_port=$IMAPTEST_PORT_BASE
take_port() {
	while ! port_free "$next_port"; do next_port=$((next_port + 1)); done
	PORT=$next_port
	next_port=$((next_port + 1))
}

DOMAIN=bench.test
PASSWORD=bench-password-1
printf '%s\n' "$PASSWORD" >"$W/password"
chmod 600 "$W/password"
# The compliance user and the stress users.
USERS=(imaptest)
for i in $(seq "$IMAPTEST_USERS"); do USERS+=("u$i"); done

# --- servers: one fresh instance of each per phase -------------------------

# start_mailvault NAME: a fresh data directory; sets PORT and the
# certificate (made on the first start) in CERT/KEY.
start_mailvault() {
	local d=$W/$1 smtp
	mkdir -p "$d"
	take_port
	smtp=$PORT
	take_port
	# The per-IP limits protect a real server from one abusive client;
	# here one client (127.0.0.1) is all the traffic, so they are raised
	# out of the way, as Dovecot has none by default.
	cat >"$d/mailvault.yaml" <<EOF
data_dir: $d/data
hostname: mx.$DOMAIN
listen:
  smtp: "127.0.0.1:$smtp"
  submission: "off"
  submissions: "off"
  imap: "off"
  imaps: "127.0.0.1:$PORT"
  pop3: "off"
  pop3s: "off"
imap:
  connections_per_minute: 1000000
  max_connections_per_ip: 1000
EOF
	"$MV" domain add --data "$d/data" "$DOMAIN" >/dev/null || die "mailvault domain add failed"
	local u
	for u in "${USERS[@]}"; do
		"$MV" user add --data "$d/data" "$u@$DOMAIN" --password-stdin <"$W/password" >/dev/null || die "mailvault user add $u failed"
	done
	if [[ -n ${CERT:-} ]]; then
		mkdir -p "$d/data/tls"
		cp "$CERT" "$d/data/tls/cert.pem"
		cp "$KEY" "$d/data/tls/key.pem"
	fi
	# 9>&-: the servers must not hold the run's lock (fd 9); one left
	# running would keep the next run waiting.
	"$MV" serve -c "$d/mailvault.yaml" >"$d/mailvault.out" 2>"$d/mailvault.log" 9>&- &
	PIDS+=($!)
	wait_port "$PORT" mailvault "$d/mailvault.log"
	if [[ -z ${CERT:-} ]]; then
		CERT=$W/cert.pem KEY=$W/key.pem
		cp "$d/data/tls/cert.pem" "$CERT" || die "mailvault made no certificate in $d/data/tls"
		cp "$d/data/tls/key.pem" "$KEY"
		# mailvault's argon2id hashes, for Dovecot's passwd-file.
		awk -F'"' '/"address":/ { a = $4 } /"password_hash":/ { print a ":" $4 }' "$d/data/accounts.json" >"$W/hashes"
	fi
}

# start_dovecot NAME: a private Dovecot instance on a fresh mail directory.
start_dovecot() {
	local d=$W/$1
	mkdir -p "$d/run" "$d/state" "$d/mail"
	take_port
	local uid=${BENCH_VMAIL_UID:-5000}
	chown "$uid:$uid" "$d/mail"
	cp "$CERT" "$d/cert.pem"
	cp "$KEY" "$d/key.pem"
	chmod 600 "$d/key.pem"
	local u h
	: >"$d/users"
	for u in "${USERS[@]}"; do
		h=$(grep "^$u@$DOMAIN:" "$W/hashes" | cut -d: -f2-)
		[[ $h == '$argon2id$'* ]] || die "no argon2id hash for $u in mailvault's accounts"
		echo "$u@$DOMAIN:{ARGON2ID}$h:$uid:$uid::$d/mail/$u::" >>"$d/users"
	done
	chmod 640 "$d/users"
	chgrp dovecot "$d/users"
	cat >"$d/dovecot.conf" <<EOF
# Private instance for the benchmark: loopback only, everything under $d.
# Settings not named here are Dovecot's defaults (no auth cache unless IMAPTEST_DOVECOT_AUTH_CACHE=1).
base_dir = $d/run
state_dir = $d/state
log_path = $d/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <$d/cert.pem
ssl_key = <$d/key.pem
auth_mechanisms = plain
$( ((IMAPTEST_DOVECOT_AUTH_CACHE == 1)) && printf 'auth_cache_size = 10M\nauth_cache_ttl = 60 s\n' || true)
passdb {
  driver = passwd-file
  args = username_format=%u $d/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $d/users
}
mail_location = maildir:~/Maildir
first_valid_uid = $uid
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $PORT
    ssl = yes
  }
}
EOF
	dovecot -c "$d/dovecot.conf" >"$d/dovecot-start.log" 2>&1 9>&- || { cat "$d/dovecot-start.log" >&2; tail -n 20 "$d/dovecot.log" >&2; die "dovecot did not start"; }
	DC_PIDFILES+=("$d/run/master.pid")
	wait_port "$PORT" dovecot "$d/dovecot.log"
}

stop_servers() {
	local p f pid
	for f in "${DC_PIDFILES[@]}"; do
		pid=$(cat "$f" 2>/dev/null) || continue
		kill "$pid" 2>/dev/null || continue
		for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	done
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=() DC_PIDFILES=()
}

# --- compliance ------------------------------------------------------------

declare -A R
P_MV=() P_DC=()

# compliance SERVER PORT
compliance() {
	local srv=$1 port=$2 out=$W/compliance.$1.out
	log "compliance tests against $srv"
	"$IMAPTEST" host=127.0.0.1 port="$port" ssl=any-cert user="imaptest@$DOMAIN" pass="$PASSWORD" \
		test="$IMAPTEST_TESTS" >"$out" 2>&1 || true
	local summary
	summary=$(grep -E '^[0-9]+ test groups: ' "$out" | tail -n1)
	[[ -n $summary ]] || { tail -n 20 "$out" >&2; die "imaptest printed no summary against $srv"; }
	R[groups.$srv]=$(sed -E 's/^([0-9]+) test groups.*/\1/' <<<"$summary")
	R[failed.$srv]=$(sed -E 's/.*: ([0-9]+) failed.*/\1/' <<<"$summary")
	R[skipped.$srv]=$(sed -nE 's/.* ([0-9]+) skipped.*/\1/p' <<<"$summary")
	R[skipped.$srv]=${R[skipped.$srv]:-0}
	R[base.$srv]=$(sed -nE 's/^base protocol: ([0-9]+\/[0-9]+) .*/\1/p' "$out" | tail -n1)
	R[ext.$srv]=$(sed -nE 's/^extensions: ([0-9]+\/[0-9]+) .*/\1/p' "$out" | tail -n1)
	R[failedlist.$srv]=$(sed -nE 's/^\*\*\* Test ([^ ]+) command.*/\1/p' "$out" | sort -u | tr '\n' ' ')
}

# --- stress ----------------------------------------------------------------

# stress SERVER PORT PROFILE ARGS...
stress() {
	local srv=$1 port=$2 prof=$3
	shift 3
	local out=$W/stress.$prof.$srv.out
	log "stress '$prof' against $srv: $IMAPTEST_CLIENTS clients, $IMAPTEST_USERS users, $IMAPTEST_SECS s"
	"$IMAPTEST" host=127.0.0.1 port="$port" ssl=any-cert user="u%d@$DOMAIN" users="$IMAPTEST_USERS" pass="$PASSWORD" \
		clients="$IMAPTEST_CLIENTS" msgs="$IMAPTEST_MSGS" mbox="$W/source.mbox" secs="$IMAPTEST_SECS" \
		"$@" >"$out" 2>&1 || true
	# The first all-numbers row after "Totals:" holds the counts.
	local totals header
	header=$(awk '/^Totals:/ { getline; print; exit }' "$out")
	totals=$(awk '/^Totals:/ { t = 1; next } t && /^[ 0-9]+$/ { print; exit }' "$out")
	[[ -n $totals ]] || { tail -n 20 "$out" >&2; die "imaptest printed no totals against $srv ($prof)"; }
	R[cmds.$prof.$srv]=$(awk -v s="$IMAPTEST_SECS" '{ n = 0; for (i = 1; i <= NF; i++) n += $i; printf "%.0f", n / s }' <<<"$totals")
	R[logins.$prof.$srv]=$(awk '{ print $1 }' <<<"$totals")
	R[errors.$prof.$srv]=$(grep -c '^Error:' "$out" || true)
	# Average LOGIN latency: imaptest prints the average of each column
	# every 10 s ("ms/cmd avg" rows); weight each by the LOGINs counted in
	# the per-second rows before it.
	R[loginms.$prof.$srv]=$(awk '
		/^ *[0-9]+( +[0-9]+)* +[0-9]+\/ *[0-9]+/ { n += $1 }
		/ms\/cmd avg/ { if (n > 0) { sum += $1 * n; total += n }; n = 0 }
		END { if (total > 0) printf "%.0f", sum / total; else print "?" }' "$out")
	[[ $header == Logi* ]] || R[loginms.$prof.$srv]=?
}

# The messages imaptest APPENDs, in turn: 100 plain-text mails with the
# usual headers (imaptest FETCHes their ENVELOPEs and header fields),
# bodies around IMAPTEST_MSG_SIZE bytes.
awk -v size="$IMAPTEST_MSG_SIZE" -v dom="$DOMAIN" 'BEGIN {
	line = "The quick brown fox jumps over the lazy dog, again and again and again."
	for (i = 1; i <= 100; i++) {
		printf "From sender%d@example.org Mon Dec  7 12:00:00 2026\n", i % 7
		printf "Date: Mon, %d Dec 2026 12:%02d:00 +0000\n", 1 + i % 28, i % 60
		printf "From: Sender %d <sender%d@example.org>\n", i % 7, i % 7
		printf "To: User <u%d@%s>, Other <other%d@example.net>\n", i % 10, dom, i
		if (i % 3 == 0) printf "Cc: Copy <cc%d@example.com>\n", i
		printf "Subject: %s message number %d\n", (i % 4 == 0 ? "Re:" : "About"), i
		printf "Message-ID: <msg%d.bench@example.org>\n", i
		if (i > 1) printf "In-Reply-To: <msg%d.bench@example.org>\nReferences: <msg%d.bench@example.org>\n", i - 1, i - 1
		printf "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n"
		n = size * (0.5 + (i % 10) / 10) / (length(line) + 1)
		for (j = 0; j < n; j++) print line
		print ""
	}
}' >"$W/source.mbox"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# The first start makes the certificate and the hashes Dovecot uses.
start_mailvault mv-compliance
P_MV=$PORT
start_dovecot dc-compliance
P_DC=$PORT
if [[ $IMAPTEST_SKIP_COMPLIANCE != 1 ]]; then
	compliance mailvault "$P_MV"
	compliance dovecot "$P_DC"
fi
stop_servers

PROFILES=()
if [[ $IMAPTEST_SKIP_STRESS != 1 ]]; then
	declare -A PROFILE_ARGS=([default]="" [read-mostly]="logout=0 store=0 delete=0 expunge=0")
	read -r -a PROFILES <<<"$IMAPTEST_PROFILES"
	for prof in "${PROFILES[@]}"; do
		[[ -v PROFILE_ARGS[$prof] ]] || die "unknown profile '$prof' in IMAPTEST_PROFILES (default, read-mostly)"
	done
	for prof in "${PROFILES[@]}"; do
		start_mailvault "mv-$prof"
		P_MV=$PORT
		start_dovecot "dc-$prof"
		P_DC=$PORT
		# shellcheck disable=SC2086 # the profile's arguments are words
		stress mailvault "$P_MV" "$prof" ${PROFILE_ARGS[$prof]}
		# shellcheck disable=SC2086
		stress dovecot "$P_DC" "$prof" ${PROFILE_ARGS[$prof]}
		stop_servers
	done
fi

# appendrun SERVER PORT ROUND
appendrun() {
	local srv=$1 port=$2 round=$3 out=$W/append.$1.$3.out r
	log "APPEND one by one against $srv (round $round): up to $IMAPTEST_APPEND_MSGS messages, $IMAPTEST_SECS s"
	python3 "$REPO_ROOT/bench/mailserver/append.py" 127.0.0.1 "$port" "imaptest@$DOMAIN" "$PASSWORD" "$W/source.mbox" \
		"$IMAPTEST_APPEND_MSGS" "$IMAPTEST_SECS" >"$out" 2>&1 || { tail -n 5 "$out" >&2; die "append.py failed against $srv"; }
	r=$(sed -nE 's/.*"appended": ([0-9]+), "seconds": ([0-9.]+), "per_second": ([0-9.]+), "last_quarter_per_second": ([0-9.]+).*/\1 in \2 s: **\3**\/s (last quarter \4\/s)/p' "$out")
	R[append.$srv]+="${R[append.$srv]:+; }round $round (load $(cut -d' ' -f1 /proc/loadavg)): $r"
}
if ((IMAPTEST_APPEND_MSGS > 0)); then
	for round in $(seq "$IMAPTEST_APPEND_ROUNDS"); do
		start_mailvault "mv-append-$round"
		P_MV=$PORT
		start_dovecot "dc-append-$round"
		P_DC=$PORT
		appendrun mailvault "$P_MV" "$round"
		appendrun dovecot "$P_DC" "$round"
		stop_servers
	done
fi
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ----------------------------------------------------------------

REPORT=$BENCH_DIR/imaptest-results-$(date -u +%Y%m%dT%H%M%SZ).md
{
	echo "## imaptest: mailvault vs Dovecot on loopback, implicit TLS, same certificate and argon2id hashes"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before $LOAD_BEFORE, after $LOAD_AFTER"
	echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.1f GB RAM", $2 / 1048576 }' /proc/meminfo)"
	if [[ -n ${MAILVAULT_BIN:-} ]]; then
		echo "- mailvault: prebuilt $MAILVAULT_BIN"
	else
		echo "- $(go version 2>/dev/null || echo 'go: not found'); mailvault $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$REPO_ROOT" && git diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)')"
	fi
	echo "- Dovecot $(dovecot --version | cut -d' ' -f1) (Maildir, defaults, $( ((IMAPTEST_DOVECOT_AUTH_CACHE == 1)) && echo 'auth cache 10M, 60 s' || echo 'no auth cache')); imaptest $IMAPTEST"
	echo "- password hash of every user: $(cut -d: -f2- "$W/hashes" | head -n1 | cut -d'$' -f2-4)"
	echo
	echo "| imaptest | mailvault | Dovecot |"
	echo "|---|---|---|"
	if [[ $IMAPTEST_SKIP_COMPLIANCE != 1 ]]; then
		echo "| compliance: test groups failed | **${R[failed.mailvault]}** of ${R[groups.mailvault]} | **${R[failed.dovecot]}** of ${R[groups.dovecot]} |"
		echo "| compliance: groups skipped (capability not offered) | ${R[skipped.mailvault]} | ${R[skipped.dovecot]} |"
		echo "| compliance: base protocol commands failed | ${R[base.mailvault]} | ${R[base.dovecot]} |"
		echo "| compliance: extension commands failed | ${R[ext.mailvault]} | ${R[ext.dovecot]} |"
	fi
	for prof in "${PROFILES[@]}"; do
		echo "| stress '$prof'${PROFILE_ARGS[$prof]:+ (${PROFILE_ARGS[$prof]})}: commands/s | **${R[cmds.$prof.mailvault]}** | **${R[cmds.$prof.dovecot]}** |"
		echo "| stress '$prof': LOGINs, average LOGIN time | ${R[logins.$prof.mailvault]}, ${R[loginms.$prof.mailvault]} ms | ${R[logins.$prof.dovecot]}, ${R[loginms.$prof.dovecot]} ms |"
		echo "| stress '$prof': imaptest errors | ${R[errors.$prof.mailvault]} | ${R[errors.$prof.dovecot]} |"
	done
	if ((IMAPTEST_APPEND_MSGS > 0)); then
		echo "| APPEND one by one (up to $IMAPTEST_APPEND_MSGS, $IMAPTEST_SECS s; rounds alternate, ours first): messages | ${R[append.mailvault]} | ${R[append.dovecot]} |"
	fi
	echo
	[[ $IMAPTEST_SKIP_COMPLIANCE == 1 ]] || echo "Failed groups, mailvault: ${R[failedlist.mailvault]:-none}; Dovecot: ${R[failedlist.dovecot]:-none}."
	if ((${#PROFILES[@]} > 0)); then
		echo "Stress: $IMAPTEST_CLIENTS clients over $IMAPTEST_USERS users, $IMAPTEST_MSGS messages per mailbox (APPENDed by imaptest from 100 generated mails, bodies about $IMAPTEST_MSG_SIZE B), $IMAPTEST_SECS s per profile, each profile on fresh mailboxes; commands/s = all commands imaptest counted / seconds."
	fi
} | tee "$REPORT"
echo "imaptest.sh: report saved to $REPORT" >&2
