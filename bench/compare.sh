#!/usr/bin/env bash
# compare.sh: back up, change and restore the same Maildir corpus with
# mailvault, restic and (optionally) kopia, one tool after the other, and
# print a markdown table of wall and CPU times, throughput ratios, peak RSS
# and repository sizes, with the machine's cold parallel read rate of the
# corpus as the yardstick for full-backup throughput.
#
# Usage (from anywhere):
#   bash bench/compare.sh                      # 2.5 GB corpus
#   BENCH_SIZE=50MB bash bench/compare.sh      # quick smoke run
#   bash bench/compare.sh --s3                 # both repositories in MinIO on
#                                              # 127.0.0.1 (bench/s3.sh)
#
# Environment:
#   BENCH_SIZE           corpus size (default 2.5GB)
#   BENCH_SEED           corpus seed (default 1); the mutation uses seed+1
#   MAILVAULT_BENCH_DIR  cache and work directory (default /var/tmp/mailvault-bench)
#   BENCH_TOOLS          tools to measure (default "mailvault restic"; add
#                        kopia for "mailvault restic kopia"); with restic or
#                        kopia alone the mailvault binary is still needed to
#                        generate and mutate the corpus
#   BENCH_CACHE          cold (default): each backup starts with the corpus
#                        evicted from the page cache (mailvault dev evict);
#                        warm: read once with tar before each backup
#   KOPIA_VERSION        kopia to build when it is not installed (v0.21.1)
#   MAILVAULT_BIN        use this mailvault binary instead of building one
#   BENCH_MUTATE_ARGS    extra mutate-corpus flags (e.g. "--new 50 --moves 10")
#   BENCH_VERIFY         1 (default) compares full restores with the source
#   BENCH_KEEP           1 keeps the work directory (repositories, restores)
#
# See bench/README.md for what is measured and how to read the table.
set -euo pipefail

BENCH_SIZE=${BENCH_SIZE:-2.5GB}
BENCH_SEED=${BENCH_SEED:-1}
BENCH_DIR=${MAILVAULT_BENCH_DIR:-/var/tmp/mailvault-bench}
BENCH_TOOLS=${BENCH_TOOLS:-mailvault restic}
BENCH_VERIFY=${BENCH_VERIFY:-1}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_CACHE=${BENCH_CACHE:-cold}
KOPIA_VERSION=${KOPIA_VERSION:-v0.21.1}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BACKEND=local
case ${1:-} in
"") ;;
--s3) BACKEND=s3 ;;
*) echo "usage: compare.sh [--s3]" >&2; exit 2 ;;
esac

die() { echo "compare.sh: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }
has_tool() { [[ " $BENCH_TOOLS " == *" $1 "* ]]; }
# shellcheck source=bench/s3.sh
[[ $BACKEND == s3 ]] && source "$REPO_ROOT/bench/s3.sh"

for t in $BENCH_TOOLS; do
	[[ $t == mailvault || $t == restic || $t == kopia ]] || die "unknown tool in BENCH_TOOLS: $t"
done
[[ $BENCH_CACHE == cold || $BENCH_CACHE == warm ]] || die "BENCH_CACHE must be cold or warm, not $BENCH_CACHE"

mkdir -p "$BENCH_DIR"
# One run at a time per cache directory: runs share the corpus, and two
# benchmarks at once would spoil each other's figures anyway.
exec 9>"$BENCH_DIR/.lock"
if ! flock -n 9; then
	log "waiting for another compare.sh run using $BENCH_DIR"
	flock 9
fi
# The work directory sits next to the corpus cache so that copying the
# corpus stays on one file system.
W=$(mktemp -d "$BENCH_DIR/run.XXXXXX")
cleanup() {
	local rc=$?
	[[ $BACKEND == s3 ]] && minio_stop
	if [[ $BENCH_KEEP == 1 ]]; then
		echo "compare.sh: kept work directory $W" >&2
	else
		rm -rf "$W" "$BENCH_DIR/corpus.tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- tools -----------------------------------------------------------------

# need PROGRAM PACKAGE installs the Debian package that provides a missing
# program.
need() {
	command -v "$1" >/dev/null && return
	log "installing $2"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; } ||
		die "cannot install $2 (for $1)"
}
need /usr/bin/time time
has_tool restic && need restic restic
has_tool mailvault && need age-keygen age
[[ $BACKEND == s3 ]] && need curl curl

# kopia has no Debian package: build it from the Go module proxy once and
# keep the binary with the cached MinIO build (~/.cache/mailvault/bin). A
# throwaway module, since `go install` of a module with replace directives
# is refused.
KOPIA=
if has_tool kopia; then
	KOPIA=$(command -v kopia || true)
	if [[ -z $KOPIA ]]; then
		KOPIA=${XDG_CACHE_HOME:-$HOME/.cache}/mailvault/bin/kopia
		if [[ ! -x $KOPIA || $(cat "$KOPIA.version" 2>/dev/null) != "$KOPIA_VERSION" ]]; then
			log "building kopia $KOPIA_VERSION (minutes, once)"
			mkdir -p "$(dirname "$KOPIA")"
			kb=$(mktemp -d)
			(cd "$kb" && go mod init kopiabuild >/dev/null 2>&1 &&
				go get "github.com/kopia/kopia@$KOPIA_VERSION" >/dev/null 2>&1 &&
				go build -o "$KOPIA.tmp" github.com/kopia/kopia) || { rm -rf "$kb"; die "cannot build kopia $KOPIA_VERSION"; }
			rm -rf "$kb"
			mv "$KOPIA.tmp" "$KOPIA"
			echo "$KOPIA_VERSION" >"$KOPIA.version"
		fi
	fi
fi

if [[ -n ${MAILVAULT_BIN:-} ]]; then
	MV=$MAILVAULT_BIN
	[[ -x $MV ]] || die "MAILVAULT_BIN=$MV is not executable"
else
	log "building mailvault"
	MV=$W/mailvault
	(cd "$REPO_ROOT" && go build -o "$MV" ./cmd/mailvault) || die "go build ./cmd/mailvault failed"
fi

# require_cmd fails loudly when the binary lacks a command the benchmark
# drives, instead of producing a table with holes.
require_cmd() {
	local out
	# cobra prints the parent's help (exit 0) for an unknown subcommand of
	# a command with subcommands, and an error for an unknown command of
	# the root: check that the usage line names the command itself.
	if ! out=$("$MV" "$@" --help 2>&1) || ! grep -A1 '^Usage:' <<<"$out" | grep -qE "mailvault $*( |\$)"; then
		die "$MV lacks the command 'mailvault $*' (help output: $(head -c 300 <<<"$out"))"
	fi
}
require_cmd dev gen-corpus
require_cmd dev mutate-corpus
require_cmd dev evict
if has_tool mailvault; then
	require_cmd init
	require_cmd backup
	require_cmd restore
fi

if [[ $BACKEND == s3 ]]; then
	minio_start "$W/minio"
	export AWS_ACCESS_KEY_ID=$S3_USER AWS_SECRET_ACCESS_KEY=$S3_SECRET AWS_DEFAULT_REGION=$S3_REGION
	for t in $BENCH_TOOLS; do s3_make_bucket "bench-$t"; done
fi

RESTIC_OPTS=()
RESTIC_INIT_OPTS=()
if has_tool restic; then
	# Compression (repository format 2) arrived in restic 0.14; older
	# versions can only write uncompressed repositories.
	if restic --help 2>&1 | grep -q -- '--compression'; then
		RESTIC_OPTS+=(--compression auto)
		RESTIC_INIT_OPTS+=(--repository-version 2)
	fi
	RESTIC_OPTS+=(--cache-dir "$W/restic-cache")
fi
# mailvault's metadata cache (S3 repositories) lives in the work
# directory too, so both tools start each run cold and leave nothing in ~.
export MAILVAULT_CACHE_DIR=$W/mailvault-cache
# kopia with its defaults (no compression, its default splitter and
# hash), its configuration, cache and logs in the work directory too.
export KOPIA_CONFIG_PATH=$W/kopia.config KOPIA_LOG_DIR=$W/kopia-logs KOPIA_CHECK_FOR_UPDATES=false

# --- corpus ----------------------------------------------------------------

CORPUS=$BENCH_DIR/corpus
# The stamp names everything the corpus depends on, generator source
# included, so that a changed generator does not reuse a stale corpus.
GEN_HASH=$(cat "$REPO_ROOT"/bench/corpus/*.go 2>/dev/null | sha256sum | cut -c1-16)
STAMP="seed=$BENCH_SEED size=$BENCH_SIZE generator=$GEN_HASH"
if [[ -d $CORPUS && -f $BENCH_DIR/corpus.stamp && $(head -n1 "$BENCH_DIR/corpus.stamp") == "$STAMP" ]]; then
	log "reusing corpus $CORPUS ($STAMP)"
else
	log "generating corpus ($STAMP)"
	rm -rf "$CORPUS" "$BENCH_DIR/corpus.tmp" "$BENCH_DIR/corpus.stamp"
	/usr/bin/time -f '%e %M' -o "$W/gen.time" \
		"$MV" dev gen-corpus --out "$BENCH_DIR/corpus.tmp" --size "$BENCH_SIZE" --seed "$BENCH_SEED" --json >"$W/gen.json" ||
		die "corpus generation failed"
	mv "$BENCH_DIR/corpus.tmp" "$CORPUS"
	{ echo "$STAMP"; cat "$W/gen.json"; echo "generated in $(cut -d' ' -f1 "$W/gen.time") s"; } >"$BENCH_DIR/corpus.stamp"
fi
json_field() { grep -o "\"$1\": *[0-9.]*" "$BENCH_DIR/corpus.stamp" | sed -n 1p | grep -o '[0-9.]*$'; }

DATA=$W/data
log "copying corpus to $DATA"
cp -a "$CORPUS" "$DATA"

# --- measurement helpers ---------------------------------------------------

declare -A SECS RSS CPU SRVCPU SRVREQ
STEPS=()
LOADS=()

# warm reads the whole tree so that both tools start from the same warm
# page cache (dropping caches needs privileges we cannot assume). tar to a
# pipe, since GNU tar skips reading file data when writing to /dev/null.
warm() { tar -C "$1" -cf - . | cat >/dev/null; }

# prepare DIR puts DIR's files in the state BENCH_CACHE asks for before a
# backup: evicted from the page cache (cold) or read once (warm).
prepare() {
	if [[ $BENCH_CACHE == cold ]]; then
		sync
		"$MV" dev evict "$1" >/dev/null || die "mailvault dev evict $1 failed"
	else
		warm "$1"
	fi
}

# cold_read_rate DIR prints the seconds four parallel readers take to read
# DIR's files from the disk (evicted first): the machine's cold parallel
# read rate, what a backup's throughput is measured against. xargs hands
# each cat 64 files; cat writes to /dev/null but reads every byte.
cold_read_rate() {
	sync
	"$MV" dev evict "$1" >/dev/null || die "mailvault dev evict $1 failed"
	local t0 t1
	t0=$(date +%s.%N)
	find "$1" -type f -print0 | xargs -0 -P4 -n64 cat >/dev/null
	t1=$(date +%s.%N)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}

# timed STEP TOOL CMD... runs CMD under GNU time and records wall seconds
# and peak RSS. Dirty pages from earlier steps are flushed first so that
# no tool pays for another's write-back.
timed() {
	local step=$1 tool=$2
	shift 2
	sync
	local tf="$W/time.$step.$tool" lf="$W/log.$step.$tool" cpu0=
	LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
	log "$step: $tool (load $(cut -d' ' -f1-3 /proc/loadavg))"
	if [[ $BACKEND == s3 ]]; then
		cpu0=$(minio_cpu)
		minio_requests >"$W/requests.before"
	fi
	if ! /usr/bin/time -f '%e %M %U %S' -o "$tf" "$@" >"$lf" 2>&1; then
		echo "--- $tool failed in step '$step': $*" >&2
		tail -n 30 "$lf" >&2
		die "$tool failed in step '$step' (log: $lf)"
	fi
	local secs rss usr sys
	read -r secs rss usr sys < <(tail -n1 "$tf")
	SECS["$step.$tool"]=$secs
	RSS["$step.$tool"]=$rss
	CPU["$step.$tool"]=$(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')
	if [[ -n $cpu0 ]]; then
		SRVCPU["$step.$tool"]=$(awk -v a="$cpu0" -v b="$(minio_cpu)" 'BEGIN { printf "%.1f", b - a }')
		# The step's requests by API, kept with the logs (BENCH_KEEP=1).
		minio_requests | awk 'NR == FNR { a[$1] = $2; next } $2 > a[$1] { print $1, $2 - a[$1] }' \
			"$W/requests.before" - >"$W/requests.$step.$tool"
		SRVREQ["$step.$tool"]=$(awk '{ n += $2 } END { print n + 0 }' "$W/requests.$step.$tool")
	fi
	[[ " ${STEPS[*]} " == *" $step "* ]] || STEPS+=("$step")
}

# Command prefixes, as arrays rather than functions since GNU time can only
# run programs; env execs the tool so that time sees its peak RSS.
MVC=(env MAILVAULT_PASSWORD=bench "$MV")
RC=(env RESTIC_PASSWORD=bench restic "${RESTIC_OPTS[@]}")
KC=(env KOPIA_PASSWORD=bench "$KOPIA")

R1=$W/repo-mailvault
R2=$W/repo-restic
R3=$W/repo-kopia
KOPIA_CREATE=(repository create filesystem --path "$R3")
if [[ $BACKEND == s3 ]]; then
	R1=s3:http://$MINIO_ADDR/bench-mailvault
	R2=s3:http://$MINIO_ADDR/bench-restic
	KOPIA_CREATE=(repository create s3 --bucket bench-kopia --endpoint "$MINIO_ADDR" --disable-tls
		--access-key "$S3_USER" --secret-access-key "$S3_SECRET" --region "$S3_REGION")
fi
declare -A BYTES

# kopia_root prints the root object of kopia's latest snapshot of DATA,
# what its restores take (with a path below it for one user).
kopia_root() {
	"${KC[@]}" snapshot list --json "$DATA" | grep -o '"rootEntry":{[^}]*"obj":"[^"]*"' | tail -n1 | sed 's/.*"obj":"//; s/"$//'
}

# --- the run ---------------------------------------------------------------

# The yardstick: how fast this machine reads the corpus cold, four files at
# a time (taken on the corpus cache, which the copy below does not evict).
log "cold parallel read of the corpus"
READ_SECS=$(cold_read_rate "$CORPUS")
READ_BYTES=$(du -sb "$CORPUS" | cut -f1)
READ_RATE=$(awk -v b="$READ_BYTES" -v s="$READ_SECS" 'BEGIN { printf "%.0f", b / 1e6 / (s > 0 ? s : 0.01) }')
log "cold parallel read: $READ_SECS s, $READ_RATE MB/s"

has_tool mailvault && timed init mailvault "${MVC[@]}" init --repo "$R1"
has_tool restic && timed init restic "${RC[@]}" init --repo "$R2" "${RESTIC_INIT_OPTS[@]}"
has_tool kopia && timed init kopia "${KC[@]}" "${KOPIA_CREATE[@]}" --cache-directory "$W/kopia-cache"

backup_step() {
	local step=$1
	BYTES[$step]=$(du -sb "$DATA" | cut -f1)
	if has_tool mailvault; then
		prepare "$DATA"
		timed "$step" mailvault "${MVC[@]}" backup --repo "$R1" "$DATA"
	fi
	if has_tool restic; then
		prepare "$DATA"
		timed "$step" restic "${RC[@]}" -r "$R2" backup "$DATA"
	fi
	if has_tool kopia; then
		prepare "$DATA"
		timed "$step" kopia "${KC[@]}" snapshot create "$DATA"
	fi
}

backup_step "full backup"
backup_step "no-change backup"
# The same rerun opened with an age identity instead of the passphrase: how
# scheduled backups are meant to run, without the passphrase's deliberate
# 64 MiB scrypt cost. restic and kopia have no equivalent; their rows
# repeat their passphrase time so the ratio compares the two ways each
# tool is run.
if has_tool mailvault; then
	age-keygen -o "$W/identity.txt" 2>/dev/null || die "age-keygen failed (apt-get install age)"
	"${MVC[@]}" key add --repo "$R1" --recipient "$(age-keygen -y "$W/identity.txt")" >/dev/null || die "key add failed"
	prepare "$DATA"
	timed "no-change backup (age identity)" mailvault "$MV" backup --repo "$R1" --identity "$W/identity.txt" "$DATA"
	for t in restic kopia; do
		has_tool $t || continue
		SECS["no-change backup (age identity).$t"]=${SECS["no-change backup.$t"]}
		RSS["no-change backup (age identity).$t"]=${RSS["no-change backup.$t"]}
		CPU["no-change backup (age identity).$t"]=${CPU["no-change backup.$t"]}
	done
fi
# shellcheck disable=SC2086 # BENCH_MUTATE_ARGS is a list of flags
"$MV" dev mutate-corpus --dir "$DATA" --seed $((BENCH_SEED + 1)) ${BENCH_MUTATE_ARGS:-} --json >"$W/mutate.json" || die "mutate-corpus failed"
log "mutated: $(tr -d ' \n' <"$W/mutate.json")"
backup_step "backup after mutation"

BYTES["full restore"]=$(du -sb "$DATA" | cut -f1)
has_tool mailvault && timed "full restore" mailvault "${MVC[@]}" restore --repo "$R1" latest --target "$W/restore-mailvault"
has_tool restic && timed "full restore" restic "${RC[@]}" -r "$R2" restore latest --target "$W/restore-restic"
KOPIA_ROOT=
if has_tool kopia; then
	KOPIA_ROOT=$(kopia_root)
	[[ -n $KOPIA_ROOT ]] || die "kopia: no snapshot of $DATA listed"
	timed "full restore" kopia "${KC[@]}" snapshot restore "$KOPIA_ROOT" "$W/restore-kopia"
fi

# The one-user restore takes the largest mailbox (ties broken by name), so
# that it moves enough data for its time to mean something.
USER_DIR=$(cd "$DATA" && du -sb -- */*/ | LC_ALL=C sort -k1,1nr -k2 | sed -n '1{s|^[0-9]*\t||;s|/$||;p}')
[[ -n $USER_DIR ]] || die "no mailbox found in $DATA"
USER_ADDR="${USER_DIR#*/}@${USER_DIR%%/*}"
BYTES["one-user restore"]=$(du -sb "$DATA/$USER_DIR" | cut -f1)
has_tool mailvault && timed "one-user restore" mailvault "${MVC[@]}" restore --repo "$R1" latest --target "$W/user-mailvault" --user "$USER_ADDR"
has_tool restic && timed "one-user restore" restic "${RC[@]}" -r "$R2" restore latest --target "$W/user-restic" --include "$DATA/$USER_DIR"
has_tool kopia && timed "one-user restore" kopia "${KC[@]}" snapshot restore "$KOPIA_ROOT/$USER_DIR" "$W/user-kopia"

# --- verification (untimed) ------------------------------------------------

VERIFY=()
# verify WHAT TOOL SOURCE CANDIDATE...: compares SOURCE with the first
# candidate directory that exists. restic restores absolute paths under the
# target; mailvault may restore the absolute path or the tree itself.
verify() {
	local what=$1 tool=$2 src=$3 got="" c
	shift 3
	for c in "$@"; do
		if [[ -d $c ]]; then got=$c; break; fi
	done
	local d="$W/diff.$what.$tool"
	if [[ -z $got ]]; then
		VERIFY+=("$tool $what: NOTHING RESTORED where expected ($*)")
	elif diff -rq "$src" "$got" >"$d" 2>&1; then
		VERIFY+=("$tool $what: identical to source ($(du -sb "$got" | cut -f1) bytes)")
	else
		VERIFY+=("$tool $what: DIFFERS from source: $(wc -l <"$d") differences, e.g. $(sed -n 1p "$d")")
	fi
}
if [[ $BENCH_VERIFY == 1 ]]; then
	log "verifying restores"
	for tool in $BENCH_TOOLS; do
		verify "full restore" "$tool" "$DATA" "$W/restore-$tool$DATA" "$W/restore-$tool"
		verify "one-user restore" "$tool" "$DATA/$USER_DIR" "$W/user-$tool$DATA/$USER_DIR" "$W/user-$tool/$USER_DIR" "$W/user-$tool"
	done
fi

# --- report ----------------------------------------------------------------

declare -A REPO_BYTES
# repo_bytes TOOL: the bytes of the tool's repository, on disk or in its bucket.
repo_bytes() {
	if [[ $BACKEND == s3 ]]; then
		s3_bucket_bytes "bench-$1"
	else
		case $1 in
		mailvault) du -sb "$R1" | cut -f1 ;;
		restic) du -sb "$R2" | cut -f1 ;;
		kopia) du -sb "$R3" | cut -f1 ;;
		esac
	fi
}
TOOLS=()
for t in mailvault restic kopia; do
	has_tool $t || continue
	TOOLS+=("$t")
	REPO_BYTES[$t]=$(repo_bytes "$t")
done
# The tools mailvault is compared with, one ratio column each.
OTHERS=()
if has_tool mailvault; then
	for t in restic kopia; do has_tool $t && OTHERS+=("$t"); done
fi

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
moves_data() { [[ $1 == "full backup" || $1 == "full restore" || $1 == "one-user restore" ]]; }
# cell STEP TOOL: seconds, with throughput for steps that move data, and
# for the full backup its share of the cold parallel read rate.
cell() {
	local s=${SECS[$1.$2]:-}
	[[ -n $s ]] || { echo "n/a"; return; }
	if [[ $1 == "full backup" ]]; then
		awk -v s="$s" -v b="${BYTES[$1]}" -v r="$READ_RATE" 'BEGIN { t = b / 1e6 / (s > 0 ? s : 0.01); printf "%.2f (%.0f MB/s, %.0f %% of cold read)", s, t, 100 * t / (r > 0 ? r : 1) }'
	elif moves_data "$1"; then
		awk -v s="$s" -v b="${BYTES[$1]}" 'BEGIN { printf "%.2f (%.0f MB/s)", s, b / 1e6 / (s > 0 ? s : 0.01) }'
	else
		echo "$s"
	fi
}
# ratio STEP OTHER: how mailvault compares with OTHER; >1 is better for the
# throughput ratio (OTHER's time / mailvault's), <1 for the time ratio.
ratio() {
	local a=${SECS[$1.mailvault]:-} b=${SECS[$1.$2]:-}
	[[ -n $a && -n $b ]] || { echo "n/a"; return; }
	if moves_data "$1"; then
		awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f× throughput", b / (a > 0 ? a : 0.01) }'
	else
		awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f× time", a / (b > 0 ? b : 0.01) }'
	fi
}
# per_tool STEP ARRAY: the step's values of an array (CPU, RSS) for each
# tool, joined with " / ".
per_tool() {
	local -n arr=$2
	local t out="" v
	for t in "${TOOLS[@]}"; do
		[[ -n $out ]] && out+=" / "
		v=${arr[$1.$t]:-}
		if [[ -z $v ]]; then
			out+="n/a"
		elif [[ $2 == RSS ]]; then
			out+=$(awk -v k="$v" 'BEGIN { printf "%.0f MB", k / 1024 }')
		else
			out+="$v"
		fi
	done
	echo "$out"
}
# srvcpu STEP: MinIO's CPU seconds and requests while each tool ran the
# step (S3 only).
srvcpu() {
	[[ $BACKEND == s3 ]] || return 0
	local t out=""
	for t in "${TOOLS[@]}"; do
		[[ -n $out ]] && out+=" / "
		if [[ -n ${SRVCPU[$1.$t]:-} ]]; then
			out+="${SRVCPU[$1.$t]} s, ${SRVREQ[$1.$t]} req"
		else
			out+="n/a"
		fi
	done
	echo " $out |"
}

NAMES=${TOOLS[*]}
TITLE=${NAMES// / vs }
NAMES=${NAMES// / \/ }
REPORT=$BENCH_DIR/results-$(date -u +%Y%m%dT%H%M%SZ).md
{
	if [[ $BACKEND == s3 ]]; then
		echo "## $TITLE, repositories in MinIO on 127.0.0.1: Maildir corpus of $BENCH_SIZE (seed $BENCH_SEED)"
	else
		echo "## $TITLE: Maildir corpus of $BENCH_SIZE (seed $BENCH_SEED)"
	fi
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.1f GB RAM", $2 / 1048576 }' /proc/meminfo)"
	echo "- kernel: $(uname -sr); file system: $(df -T "$W" | awk 'NR == 2 { print $2 }') on $(df "$W" | awk 'NR == 2 { print $1 }')"
	echo "- load average: $(cut -d' ' -f1-3 /proc/loadavg) at the end; 1-minute load before each step between $(printf '%s\n' "${LOADS[@]}" | sort -g | sed -n '1p;$p' | paste -sd- | sed 's/-/ and /')"
	echo "- $(go version 2>/dev/null || echo 'go: not found')"
	if [[ $BACKEND == s3 ]]; then
		echo "- S3: MinIO $(cat "$MINIO_BIN.version" 2>/dev/null) (scripts/minio.sh), one drive ($(df -T "$W" | awk 'NR == 2 { print $2 }') in the work directory), plain HTTP on $MINIO_ADDR; each tool with its own bucket and its default S3 settings"
	fi
	has_tool restic && echo "- $(restic version) (options: ${RESTIC_OPTS[*]:0:2})"
	has_tool kopia && echo "- kopia $("$KOPIA" --version 2>/dev/null | cut -d' ' -f1) with its defaults (no compression)"
	echo "- mailvault: $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$REPO_ROOT" && git diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)')"
	echo "- corpus: $(json_field messages) messages in $(json_field files) files ($(json_field fanout_files) fan-out copies, $(json_field attachments) with attachments), $(mb "$(json_field bytes)") MB of mail, $(json_field users) mailboxes"
	echo "- cold parallel read of the corpus (evicted with mailvault dev evict, then four cat processes at once, 64 files each): $READ_SECS s, **$READ_RATE MB/s**"
	echo "- mutation: $(tr -d ' \n' <"$W/mutate.json")"
	if [[ $BENCH_CACHE == cold ]]; then
		echo "- cache: cold; the corpus is evicted from the page cache (mailvault dev evict) before every backup, and dirty pages are flushed with sync before every step"
	else
		echo "- cache: warm for every tool (the corpus is read once with tar before each backup), and dirty pages are flushed with sync before every step"
	fi
	echo
	hdr="| step |"
	sep="|---|"
	for t in "${TOOLS[@]}"; do hdr+=" $t s |"; sep+="---|"; done
	for t in "${OTHERS[@]}"; do hdr+=" mailvault vs $t |"; sep+="---|"; done
	hdr+=" CPU s ($NAMES) | peak RSS ($NAMES) |"
	sep+="---|---|"
	if [[ $BACKEND == s3 ]]; then
		hdr+=" MinIO CPU, requests ($NAMES) |"
		sep+="---|"
	fi
	echo "$hdr"
	echo "$sep"
	for step in "${STEPS[@]}"; do
		row="| $step |"
		for t in "${TOOLS[@]}"; do row+=" $(cell "$step" "$t") |"; done
		for t in "${OTHERS[@]}"; do row+=" $(ratio "$step" "$t") |"; done
		row+=" $(per_tool "$step" CPU) | $(per_tool "$step" RSS) |$(srvcpu "$step")"
		echo "$row"
	done
	row="| repository size |"
	for t in "${TOOLS[@]}"; do row+=" $(mb "${REPO_BYTES[$t]}") MB |"; done
	for t in "${OTHERS[@]}"; do
		row+=" $(awk -v a="${REPO_BYTES[mailvault]}" -v b="${REPO_BYTES[$t]}" 'BEGIN { printf "%.2f× size", a / (b > 0 ? b : 1) }') |"
	done
	row+=" | |"
	[[ $BACKEND == s3 ]] && row+=" |"
	echo "$row"
	echo
	echo "Throughput ratio = the other tool's time / mailvault's (above 1: mailvault is faster); time ratio = mailvault's time / the other's (below 1: mailvault is faster); size ratio = mailvault / the other (below 1: mailvault is smaller). CPU s = user + system seconds of the tool's process. % of cold read = full-backup MB/s / the cold parallel read rate above. One-user restore: $USER_ADDR ($(mb "${BYTES["one-user restore"]}") MB)."
	if ((${#VERIFY[@]} > 0)); then
		echo
		for v in "${VERIFY[@]}"; do echo "- verify: $v"; done
	fi
} | tee "$REPORT"
echo "compare.sh: report saved to $REPORT" >&2
