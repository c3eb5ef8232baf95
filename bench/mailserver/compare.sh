#!/usr/bin/env bash
# compare.sh: mailvault's mail server against Postfix + Dovecot on the same
# machine, one after the other: inbound SMTP delivery rate with Postfix's
# smtp-source (until every message is in the Maildir), then IMAP FETCH rate
# of the same mailboxes with one Go client (mailbench imapfetch). Prints a
# markdown table for docs/PERFORMANCE.md.
#
# Usage (as root, on Debian; installs postfix, dovecot-imapd, dovecot-lmtpd
# with apt-get when missing, without starting their system instances):
#   bash bench/mailserver/compare.sh
#   BENCH_MESSAGES=1000 BENCH_LARGE_MESSAGES=200 bash bench/mailserver/compare.sh   # smoke run
#
# Environment:
#   BENCH_MESSAGES        messages in the small-message run (default 10000)
#   BENCH_SIZE            their payload in bytes, smtp-source -l (default 4096)
#   BENCH_LARGE_MESSAGES  messages in the large-message run (default 1000)
#   BENCH_LARGE_SIZE      their payload (default 102400)
#   BENCH_SESSIONS        concurrent SMTP sessions, smtp-source -s (default 20)
#   BENCH_FETCH_RUNS      times each IMAP FETCH is run, median reported (default 3)
#   BENCH_IMAP_CLIENT     raw (default: responses framed and counted, not
#                         decoded) or imapclient (decoded by go-imap v2's
#                         client, which caps the ENVELOPE FETCH of both servers)
#   BENCH_PORT_BASE       first of the loopback TCP ports used (default 24500)
#   BENCH_DNS             loopback address of the NXDOMAIN resolver (default 127.0.0.77)
#   MAILVAULT_BENCH_DIR   work and report directory (default /var/tmp/mailvault-bench)
#   MAILVAULT_BIN         use this mailvault binary instead of building one
#   BENCH_KEEP            1 keeps the work directory (mailboxes, configs, logs)
#
# Everything runs on 127.0.0.1 in a private mount namespace whose
# /etc/resolv.conf points at a local resolver answering NXDOMAIN to every
# query, so no DNS leaves the machine and neither server waits on one.
# See bench/README.md for what is measured and how to read the table.
set -euo pipefail

BENCH_MESSAGES=${BENCH_MESSAGES:-10000}
BENCH_SIZE=${BENCH_SIZE:-4096}
BENCH_LARGE_MESSAGES=${BENCH_LARGE_MESSAGES:-1000}
BENCH_LARGE_SIZE=${BENCH_LARGE_SIZE:-102400}
BENCH_SESSIONS=${BENCH_SESSIONS:-20}
BENCH_FETCH_RUNS=${BENCH_FETCH_RUNS:-3}
BENCH_IMAP_CLIENT=${BENCH_IMAP_CLIENT:-raw}
BENCH_PORT_BASE=${BENCH_PORT_BASE:-24500}
BENCH_DNS=${BENCH_DNS:-127.0.0.77}
BENCH_DIR=${MAILVAULT_BENCH_DIR:-/var/tmp/mailvault-bench}
BENCH_KEEP=${BENCH_KEEP:-0}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SELF=$REPO_ROOT/bench/mailserver/compare.sh

die() { echo "compare.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }

[[ $(id -u) == 0 ]] || die "run as root: it installs packages, runs Postfix and Dovecot and binds a resolver to port 53"
for n in BENCH_MESSAGES BENCH_SIZE BENCH_LARGE_MESSAGES BENCH_LARGE_SIZE BENCH_SESSIONS BENCH_FETCH_RUNS BENCH_PORT_BASE; do
	[[ ${!n} =~ ^[1-9][0-9]*$ ]] || die "$n must be a positive integer, not '${!n}'"
done
[[ $BENCH_DNS == 127.* ]] || die "BENCH_DNS must be a loopback address (127.x.y.z)"

# --- packages (before the namespace: apt-get needs the real resolver) -----

apt_install() {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
}
if [[ -z ${MAILBENCH_IN_NS:-} ]]; then
	missing=()
	[[ -x /usr/sbin/postfix && -x /usr/sbin/smtp-source ]] || missing+=(postfix)
	[[ -x /usr/sbin/dovecot ]] || missing+=(dovecot-core)
	[[ -x /usr/lib/dovecot/imap ]] || missing+=(dovecot-imapd)
	[[ -x /usr/lib/dovecot/lmtp ]] || missing+=(dovecot-lmtpd)
	[[ -x /usr/bin/unshare ]] || missing+=(util-linux)
	if ((${#missing[@]} > 0)); then
		log "installing ${missing[*]}"
		# Postfix's debconf: no configuration, so it neither writes a
		# main.cf nor takes port 25; policy-rc.d keeps the packages from
		# starting their system-wide daemons (this script runs its own).
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
		own_policy=0
		if [[ ! -e /usr/sbin/policy-rc.d ]]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
			chmod 755 /usr/sbin/policy-rc.d
			own_policy=1
		fi
		rc=0
		apt_install "${missing[@]}" || rc=$?
		((own_policy == 0)) || rm -f /usr/sbin/policy-rc.d
		((rc == 0)) || die "apt-get install ${missing[*]} failed"
	fi
	# Everything else runs in a private mount namespace, where
	# /etc/resolv.conf can be replaced for this run's processes only.
	exec env MAILBENCH_IN_NS=1 unshare --mount --propagation private bash "$SELF" "$@"
fi

# --- work directory and cleanup --------------------------------------------

mkdir -p "$BENCH_DIR"
exec 9>"$BENCH_DIR/.mailserver.lock"
if ! flock -n 9; then
	log "waiting for another mail-server benchmark using $BENCH_DIR"
	flock 9
fi
W=$(mktemp -d "$BENCH_DIR/mailserver.XXXXXX")
# Postfix's and Dovecot's unprivileged processes must reach their queue,
# sockets and mailboxes below here.
chmod 755 "$W"
PIDS=()
PF=$W/postfix
DC=$W/dovecot
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	set +e
	[[ -d $PF/etc ]] && postfix -c "$PF/etc" stop >/dev/null 2>&1
	[[ -f $DC/run/master.pid ]] && kill "$(cat "$DC/run/master.pid")" 2>/dev/null
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	# Postfix and Dovecot stop asynchronously: give them a moment so that
	# the directory can be removed.
	for _ in $(seq 50); do
		[[ -f $PF/spool/pid/master.pid ]] && kill -0 "$(cat "$PF/spool/pid/master.pid" 2>/dev/null)" 2>/dev/null && { sleep 0.1; continue; }
		[[ -f $DC/run/master.pid ]] && kill -0 "$(cat "$DC/run/master.pid" 2>/dev/null)" 2>/dev/null && { sleep 0.1; continue; }
		break
	done
	if [[ $BENCH_KEEP == 1 || $rc != 0 ]]; then
		echo "compare.sh: kept work directory $W (logs: $W/*.log, $PF/maillog, $DC/dovecot.log)" >&2
	else
		rm -rf "$W"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -----------------------------------------------------------------

if [[ -n ${MAILVAULT_BIN:-} ]]; then
	MV=$MAILVAULT_BIN
	[[ -x $MV ]] || die "MAILVAULT_BIN=$MV is not executable"
else
	log "building mailvault"
	MV=$W/mailvault
	(cd "$REPO_ROOT" && go build -o "$MV" ./cmd/mailvault) || die "go build ./cmd/mailvault failed"
fi
MB=$W/mailbench
(cd "$REPO_ROOT" && go build -o "$MB" ./bench/mailserver/mailbench) || die "go build ./bench/mailserver/mailbench failed"

# A resolver on loopback that knows no name: the benchmark's domains are
# made up, and the machine's own resolver is not on loopback.
"$MB" dns -listen "$BENCH_DNS:53" >"$W/dns.json" 2>"$W/dns.log" &
DNS_PID=$!
PIDS+=("$DNS_PID")
printf 'nameserver %s\n' "$BENCH_DNS" >"$W/resolv.conf"
mount --bind "$W/resolv.conf" /etc/resolv.conf || die "cannot bind-mount $W/resolv.conf on /etc/resolv.conf"

# Ports: BENCH_PORT_BASE+0..3, each checked free on 127.0.0.1.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
P_MV_SMTP=$BENCH_PORT_BASE P_MV_IMAPS=$((BENCH_PORT_BASE + 1)) P_PF_SMTP=$((BENCH_PORT_BASE + 2)) P_DC_IMAPS=$((BENCH_PORT_BASE + 3))
for p in $P_MV_SMTP $P_MV_IMAPS $P_PF_SMTP $P_DC_IMAPS; do
	port_free "$p" || die "port 127.0.0.1:$p is in use (set BENCH_PORT_BASE)"
done

DOMAIN=bench.test
USERS=(small large)
PASSWORD=bench-password-1
printf '%s\n' "$PASSWORD" >"$W/password"
chmod 600 "$W/password"

# wait_port PORT NAME LOG: until something accepts on 127.0.0.1:PORT.
wait_port() {
	for _ in $(seq 300); do
		port_free "$1" || return 0
		sleep 0.1
	done
	tail -n 20 "$3" >&2 || true
	die "$2 did not listen on 127.0.0.1:$1"
}

# --- mailvault -------------------------------------------------------------

log "starting mailvault serve"
MVDATA=$W/mailvault-data
# The per-IP limits protect a real MX from one abusive client; here one
# client (127.0.0.1) is all the traffic, so they are raised out of the way.
# Postfix's equivalents (anvil's smtpd_client_*_rate_limit) are off by
# default. Everything else is serve's default.
cat >"$W/mailvault.yaml" <<EOF
data_dir: $MVDATA
hostname: mx.$DOMAIN
listen:
  smtp: "127.0.0.1:$P_MV_SMTP"
  submission: "off"
  submissions: "off"
  imap: "off"
  imaps: "127.0.0.1:$P_MV_IMAPS"
  pop3: "off"
  pop3s: "off"
smtp:
  connections_per_minute: 1000000
  max_connections_per_ip: 1000
  messages_per_minute: 1000000
imap:
  connections_per_minute: 1000
  max_connections_per_ip: 100
EOF
"$MV" domain add --data "$MVDATA" "$DOMAIN" >/dev/null || die "mailvault domain add failed"
for u in "${USERS[@]}"; do
	"$MV" user add --data "$MVDATA" "$u@$DOMAIN" --password-stdin <"$W/password" >/dev/null || die "mailvault user add $u failed"
done
"$MV" serve -c "$W/mailvault.yaml" >"$W/mailvault.out" 2>"$W/mailvault.log" &
MV_PID=$!
PIDS+=("$MV_PID")
wait_port "$P_MV_IMAPS" mailvault "$W/mailvault.log"
wait_port "$P_MV_SMTP" mailvault "$W/mailvault.log"
# mailvault made its self-signed certificate on first start; Dovecot uses
# the same one, so both run the same TLS handshake and cipher.
CERT=$MVDATA/tls/cert.pem KEY=$MVDATA/tls/key.pem
[[ -f $CERT && -f $KEY ]] || die "mailvault made no certificate in $MVDATA/tls"

# --- Dovecot ---------------------------------------------------------------

log "starting dovecot"
mkdir -p "$DC/run" "$DC/state" "$DC/mail"
# Dovecot wants its virtual mail owned by a real-looking uid above
# first_valid_uid; no passwd entry is needed for it.
VMAIL_UID=${BENCH_VMAIL_UID:-5000}
chown "$VMAIL_UID:$VMAIL_UID" "$DC/mail"
cp "$CERT" "$DC/cert.pem"
cp "$KEY" "$DC/key.pem"
chmod 600 "$DC/key.pem"
: >"$DC/users"
for u in "${USERS[@]}"; do
	echo "$u@$DOMAIN:{PLAIN}$PASSWORD:$VMAIL_UID:$VMAIL_UID::$DC/mail/$DOMAIN/$u::" >>"$DC/users"
done
chmod 640 "$DC/users"
chgrp dovecot "$DC/users"
cat >"$DC/dovecot.conf" <<EOF
# Private instance for the benchmark: loopback only, everything under $DC.
# Settings not named here are Dovecot's defaults (mail_fsync = optimized).
base_dir = $DC/run
state_dir = $DC/state
log_path = $DC/dovecot.log
protocols = imap lmtp
listen = 127.0.0.1
ssl = required
ssl_cert = <$DC/cert.pem
ssl_key = <$DC/key.pem
auth_mechanisms = plain
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $DC/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $DC/users
}
mail_location = maildir:~/Maildir
first_valid_uid = $VMAIL_UID
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $P_DC_IMAPS
    ssl = yes
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
protocol lmtp {
  postmaster_address = postmaster@$DOMAIN
}
EOF
dovecot -c "$DC/dovecot.conf" >"$W/dovecot-start.log" 2>&1 || { cat "$W/dovecot-start.log" >&2; tail -n 20 "$DC/dovecot.log" >&2; die "dovecot did not start"; }
wait_port "$P_DC_IMAPS" dovecot "$DC/dovecot.log"
for _ in $(seq 100); do [[ -S $DC/run/lmtp ]] && break; sleep 0.1; done
[[ -S $DC/run/lmtp ]] || die "dovecot made no LMTP socket $DC/run/lmtp"
# The master may write its pid file after its listeners are up (seen on a
# loaded machine): wait for it as for the socket.
for _ in $(seq 100); do [[ -s $DC/run/master.pid ]] && break; sleep 0.1; done
[[ -s $DC/run/master.pid ]] || die "dovecot wrote no $DC/run/master.pid"
DC_PID=$(cat "$DC/run/master.pid")

# --- Postfix ---------------------------------------------------------------

log "starting postfix"
mkdir -p "$PF/etc" "$PF/spool" "$PF/data"
chown postfix "$PF/data"
for u in "${USERS[@]}"; do echo "$u@$DOMAIN OK"; done >"$PF/etc/vmailbox"
# The MX side of a Postfix + Dovecot server: mail for the virtual domain
# is accepted for known users only and handed to Dovecot's LMTP, which
# writes the Maildir. No relaying, no SPF/DKIM/DMARC (Postfix does none
# without a milter or policy service).
cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $PF/spool
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.$DOMAIN
mydomain = $DOMAIN
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
virtual_mailbox_domains = $DOMAIN
virtual_mailbox_maps = texthash:$PF/etc/vmailbox
virtual_transport = lmtp:unix:$DC/run/lmtp
smtpd_relay_restrictions = reject_unauth_destination
message_size_limit = 26214400
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
alias_maps =
alias_database =
EOF
# Only the services this set-up uses, none chrooted (the LMTP socket is
# outside the queue directory).
cat >"$PF/etc/master.cf" <<EOF
127.0.0.1:$P_PF_SMTP inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
# maillog_file must lie under one of maillog_file_prefixes (default /var,
# /dev/stdout), hence the setting above for a work directory elsewhere.
# Postfix logs its own configuration errors to that file or syslog, so a
# failing check may print nothing: say where to look.
postfix -c "$PF/etc" check >"$W/postfix-check.log" 2>&1 || {
	cat "$W/postfix-check.log" "$PF/maillog" >&2 2>/dev/null
	die "postfix check failed; if nothing is printed above, run: postfix -c $PF/etc -v check, and look in syslog/journalctl for postfix's reason (kept: $PF/etc/main.cf)"
}
postfix -c "$PF/etc" start >"$W/postfix-start.log" 2>&1 || { cat "$W/postfix-start.log" "$PF/maillog" >&2; die "postfix did not start"; }
wait_port "$P_PF_SMTP" postfix "$PF/maillog"
PF_PID=$(tr -d ' ' <"$PF/spool/pid/master.pid")

# --- measurement helpers ---------------------------------------------------

# json FILE KEY: the first numeric or string value of KEY in FILE.
json() { grep -o "\"$2\":[^,}]*" "$1" | sed -n 1p | cut -d: -f2- | tr -d '"'; }
now() { date +%s.%N; }

# pids SERVER: the root processes whose trees make up the server.
pids() {
	case $1 in
	mailvault) echo "$MV_PID" ;;
	postfix) echo "$PF_PID,$DC_PID" ;;
	dovecot) echo "$DC_PID" ;;
	esac
}

# maildir_new SERVER USER: where a delivered message lands.
maildir_new() {
	case $1 in
	mailvault) echo "$MVDATA/mail/$DOMAIN/$2/Maildir/new" ;;
	postfix) echo "$DC/mail/$DOMAIN/$2/Maildir/new" ;;
	esac
}

declare -A R # results, keyed "what.server"

# dns_queries: how many queries the resolver has answered so far.
dns_queries() {
	local before
	before=$(wc -l <"$W/dns.json")
	kill -USR1 "$DNS_PID"
	for _ in $(seq 100); do
		(($(wc -l <"$W/dns.json") > before)) && break
		sleep 0.02
	done
	tail -n1 "$W/dns.json" | grep -o '"queries":[0-9]*' | cut -d: -f2
}

# watch_start SERVER KEY samples the server's processes every 250 ms until
# watch_stop, into $W/procs.KEY.SERVER.json (CPU time at the end, largest
# PSS sum seen, peak RSS of each process since the -reset of the phase).
watch_start() {
	"$MB" procs -reset -pid "$(pids "$1")" >"$W/procs0.$2.$1.json" || die "cannot read $1's processes"
	"$MB" procs -watch 250ms -pid "$(pids "$1")" >"$W/procs.$2.$1.json" &
	WATCH_PID=$!
	PIDS+=("$WATCH_PID")
}
watch_stop() {
	kill -TERM "$WATCH_PID"
	wait "$WATCH_PID" || die "process sampling failed"
}

# deliver SERVER PORT USER COUNT SIZE: smtp-source sends COUNT messages of
# SIZE payload bytes over BENCH_SESSIONS parallel sessions (one message per
# connection, as MXes usually receive them), timed until the last message
# is in USER's Maildir new/.
deliver() {
	local srv=$1 port=$2 user=$3 count=$4 size=$5
	local key="deliver-$size"
	local dir out
	dir=$(maildir_new "$srv" "$user")
	sync
	local q0
	q0=$(dns_queries)
	watch_start "$srv" "$key"
	log "deliver: $count × $size B to $srv ($BENCH_SESSIONS sessions)"
	local t0 t1 t2
	t0=$(now)
	smtp-source -s "$BENCH_SESSIONS" -m "$count" -l "$size" -M client.sender.test -f "sender@sender.test" \
		-t "$user@$DOMAIN" -S "benchmark $size" "127.0.0.1:$port" >"$W/smtp-source.$key.$srv.log" 2>&1 ||
		{ tail -n 20 "$W/smtp-source.$key.$srv.log" >&2; die "smtp-source to $srv failed"; }
	t1=$(now)
	out=$("$MB" wait -dir "$dir" -count "$count" -timeout 15m) || die "$srv did not deliver $count messages to $dir"
	t2=$(now)
	watch_stop
	local got
	got=$(echo "$out" | grep -o '"files":[0-9]*' | cut -d: -f2)
	[[ $got == "$count" ]] || die "$srv: $dir holds $got messages, want $count"
	R[$key.secs.$srv]=$(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.2f", b - a }')
	R[$key.accept.$srv]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
	R[$key.dns.$srv]=$(($(dns_queries) - q0))
}

# fetch SERVER PORT USER COUNT: one IMAPS session fetches USER's INBOX.
fetch() {
	local srv=$1 port=$2 user=$3 count=$4
	local key="fetch-$user"
	sync
	watch_start "$srv" "$key"
	log "fetch: $user's $count messages from $srv"
	"$MB" imapfetch -name "$srv" -addr "127.0.0.1:$port" -user "$user@$DOMAIN" -password-file "$W/password" \
		-runs "$BENCH_FETCH_RUNS" -client "$BENCH_IMAP_CLIENT" -expect "$count" -pid "$(pids "$srv")" >"$W/$key.$srv.json" 2>"$W/$key.$srv.log" ||
		{ cat "$W/$key.$srv.log" >&2; die "IMAP fetch from $srv failed"; }
	# Dovecot's imap process has exited by now; its CPU time is in its
	# master's reaped-children time.
	watch_stop
}

# --- the run ---------------------------------------------------------------

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
deliver mailvault "$P_MV_SMTP" small "$BENCH_MESSAGES" "$BENCH_SIZE"
deliver postfix "$P_PF_SMTP" small "$BENCH_MESSAGES" "$BENCH_SIZE"
deliver mailvault "$P_MV_SMTP" large "$BENCH_LARGE_MESSAGES" "$BENCH_LARGE_SIZE"
deliver postfix "$P_PF_SMTP" large "$BENCH_LARGE_MESSAGES" "$BENCH_LARGE_SIZE"
# Postfix must have nothing left: every message went to Dovecot.
postqueue -c "$PF/etc" -p 2>&1 | grep -q 'Mail queue is empty' || die "Postfix's queue is not empty: $(postqueue -c "$PF/etc" -p 2>&1 | tail -n 1)"
fetch mailvault "$P_MV_IMAPS" small "$BENCH_MESSAGES"
fetch dovecot "$P_DC_IMAPS" small "$BENCH_MESSAGES"
fetch mailvault "$P_MV_IMAPS" large "$BENCH_LARGE_MESSAGES"
fetch dovecot "$P_DC_IMAPS" large "$BENCH_LARGE_MESSAGES"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ----------------------------------------------------------------

mbs() { awk -v k="$1" 'BEGIN { printf "%.0f MB", k / 1024 }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / (s > 0 ? s : 0.001) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f×", a / (b > 0 ? b : 0.001) }'; }

# cpu KEY SERVER: CPU seconds the server's processes used in the phase.
cpu() { awk -v a="$(json "$W/procs0.$1.$2.json" cpu_seconds)" -v b="$(json "$W/procs.$1.$2.json" cpu_seconds)" 'BEGIN { printf "%.1f", b - a }'; }
# pss KEY SERVER: the largest PSS sum sampled in the phase.
pss() { mbs "$(json "$W/procs.$1.$2.json" pss_sum_kb)"; }

# fetch_field SERVER USER KIND FIELD
fetch_field() {
	grep -o "{\"kind\":\"$3\"[^}]*}" "$W/fetch-$2.$1.json" | grep -o "\"$4\":[0-9.e+-]*" | cut -d: -f2
}

deliver_row() {
	local size=$1 count=$2
	local key="deliver-$size"
	local a=${R[$key.secs.mailvault]} b=${R[$key.secs.postfix]}
	echo "| deliver $count × $size B | $(rate "$count" "$a") msg/s (${a} s) | $(rate "$count" "$b") msg/s (${b} s) | **$(ratio "$b" "$a")** | $(cpu "$key" mailvault) s / $(cpu "$key" postfix) s | $(pss "$key" mailvault) / $(pss "$key" postfix) |"
}

fetch_row() {
	local user=$1 kind=$2 label=$3
	local ma da mb_ db mvfmt dcfmt
	ma=$(fetch_field mailvault "$user" "$kind" msgs_per_second)
	da=$(fetch_field dovecot "$user" "$kind" msgs_per_second)
	mb_=$(fetch_field mailvault "$user" "$kind" mb_per_second)
	db=$(fetch_field dovecot "$user" "$kind" mb_per_second)
	mvfmt=$(awk -v r="$ma" -v m="$mb_" -v k="$kind" 'BEGIN { if (k == "envelope") printf "%.0f msg/s", r; else printf "%.0f msg/s, %.1f MB/s", r, m }')
	dcfmt=$(awk -v r="$da" -v m="$db" -v k="$kind" 'BEGIN { if (k == "envelope") printf "%.0f msg/s", r; else printf "%.0f msg/s, %.1f MB/s", r, m }')
	echo "| $label | $mvfmt | $dcfmt | **$(ratio "$ma" "$da")** | | |"
}

REPORT=$BENCH_DIR/mailserver-results-$(date -u +%Y%m%dT%H%M%SZ).md
{
	echo "## mailvault vs Postfix + Dovecot: delivery and IMAP fetch on loopback"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average before $LOAD_BEFORE, after $LOAD_AFTER"
	echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.1f GB RAM", $2 / 1048576 }' /proc/meminfo)"
	echo "- kernel: $(uname -sr); file system: $(df -T "$W" | awk 'NR == 2 { print $2 }') on $(df "$W" | awk 'NR == 2 { print $1 }')"
	if [[ -n ${MAILVAULT_BIN:-} ]]; then
		echo "- $(go version 2>/dev/null || echo 'go: not found'); mailvault: prebuilt $MAILVAULT_BIN"
	else
		echo "- $(go version 2>/dev/null || echo 'go: not found'); mailvault $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$REPO_ROOT" && git diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)')"
	fi
	echo "- Postfix $(postconf -d -h mail_version 2>/dev/null), Dovecot $(dovecot --version | cut -d' ' -f1) (LMTP to Maildir, mail_fsync=$(doveconf -c "$DC/dovecot.conf" -h mail_fsync 2>/dev/null))"
	echo "- smtp-source -s $BENCH_SESSIONS, one message per connection, plain SMTP on 127.0.0.1; IMAP over implicit TLS ($(grep -o '"first_select_seconds":[0-9.]*' "$W/fetch-small.mailvault.json" >/dev/null && echo "same certificate"), one session, FETCH 1:* run $BENCH_FETCH_RUNS times, median; client: $BENCH_IMAP_CLIENT)"
	echo
	echo "| test | mailvault | Postfix + Dovecot | mailvault speed-up | server CPU s (mailvault / P+D) | peak memory, PSS (mailvault / P+D) |"
	echo "|---|---|---|---|---|---|"
	deliver_row "$BENCH_SIZE" "$BENCH_MESSAGES"
	deliver_row "$BENCH_LARGE_SIZE" "$BENCH_LARGE_MESSAGES"
	for user in small large; do
		n=$BENCH_MESSAGES size=$BENCH_SIZE
		[[ $user == large ]] && n=$BENCH_LARGE_MESSAGES size=$BENCH_LARGE_SIZE
		echo "| IMAP session on $n × $size B: login, first SELECT, every FETCH below | $(json "$W/fetch-$user.mailvault.json" first_select_seconds | cut -c1-5) s first SELECT | $(json "$W/fetch-$user.dovecot.json" first_select_seconds | cut -c1-5) s first SELECT | | $(cpu "fetch-$user" mailvault) s / $(cpu "fetch-$user" dovecot) s | $(pss "fetch-$user" mailvault) / $(pss "fetch-$user" dovecot) |"
		fetch_row "$user" full "FETCH 1:* (UID FLAGS BODY.PEEK[])"
		fetch_row "$user" header "FETCH 1:* (UID FLAGS BODY.PEEK[HEADER])"
		fetch_row "$user" envelope "FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE)"
	done
	echo
	echo "Delivery is timed from smtp-source's start until the last message is a file in the Maildir's new/ (for Postfix: delivered by Dovecot's LMTP, not just queued); smtp-source itself finished after ${R[deliver-$BENCH_SIZE.accept.mailvault]} s (mailvault) and ${R[deliver-$BENCH_SIZE.accept.postfix]} s (Postfix) in the small run. Speed-up = mailvault's rate / Postfix + Dovecot's (above 1: mailvault is faster). Server CPU adds user and system time of all the server's processes, exited ones included. Peak memory is the largest sum of the server's processes' proportional set sizes, sampled every 250 ms (shared pages split between the processes sharing them); peak RSS (VmHWM) of mailvault's one process: $(mbs "$(json "$W/procs.deliver-$BENCH_SIZE.mailvault.json" hwm_max_kb)") in the small delivery run, $(mbs "$(json "$W/fetch-small.mailvault.json" hwm_max_kb)") in the small IMAP session; largest single Postfix/Dovecot process: $(mbs "$(json "$W/procs.deliver-$BENCH_SIZE.postfix.json" hwm_max_kb)") ($(json "$W/procs.deliver-$BENCH_SIZE.postfix.json" hwm_max_comm)) while delivering, $(mbs "$(json "$W/fetch-small.dovecot.json" hwm_max_kb)") ($(json "$W/fetch-small.dovecot.json" hwm_max_comm)) in the IMAP session. DNS queries answered (all NXDOMAIN) in the small run: mailvault ${R[deliver-$BENCH_SIZE.dns.mailvault]}, Postfix + Dovecot ${R[deliver-$BENCH_SIZE.dns.postfix]}."
} | tee "$REPORT"
echo "compare.sh: report saved to $REPORT" >&2
