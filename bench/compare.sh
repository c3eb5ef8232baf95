#!/usr/bin/env bash
# compare.sh: back up, change and restore the same Maildir corpus with
# mailvault and with restic, one tool after the other, and print a markdown
# table of wall times, throughput ratios, peak RSS and repository sizes.
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
#   BENCH_TOOLS          tools to measure (default "mailvault restic"); with
#                        "restic" alone the mailvault binary is still needed to
#                        generate and mutate the corpus
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
	[[ $t == mailvault || $t == restic ]] || die "unknown tool in BENCH_TOOLS: $t"
done

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

declare -A SECS RSS SRVCPU SRVREQ
STEPS=()
LOADS=()

# warm reads the whole tree so that both tools start from the same warm
# page cache (dropping caches needs privileges we cannot assume). tar to a
# pipe, since GNU tar skips reading file data when writing to /dev/null.
warm() { tar -C "$1" -cf - . | cat >/dev/null; }

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
	if ! /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$lf" 2>&1; then
		echo "--- $tool failed in step '$step': $*" >&2
		tail -n 30 "$lf" >&2
		die "$tool failed in step '$step' (log: $lf)"
	fi
	local secs rss
	read -r secs rss < <(tail -n1 "$tf")
	SECS["$step.$tool"]=$secs
	RSS["$step.$tool"]=$rss
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

R1=$W/repo-mailvault
R2=$W/repo-restic
if [[ $BACKEND == s3 ]]; then
	R1=s3:http://$MINIO_ADDR/bench-mailvault
	R2=s3:http://$MINIO_ADDR/bench-restic
fi
declare -A BYTES

# --- the run ---------------------------------------------------------------

has_tool mailvault && timed init mailvault "${MVC[@]}" init --repo "$R1"
has_tool restic && timed init restic "${RC[@]}" init --repo "$R2" "${RESTIC_INIT_OPTS[@]}"

backup_step() {
	local step=$1
	BYTES[$step]=$(du -sb "$DATA" | cut -f1)
	if has_tool mailvault; then
		warm "$DATA"
		timed "$step" mailvault "${MVC[@]}" backup --repo "$R1" "$DATA"
	fi
	if has_tool restic; then
		warm "$DATA"
		timed "$step" restic "${RC[@]}" -r "$R2" backup "$DATA"
	fi
}

backup_step "full backup"
backup_step "no-change backup"
# The same rerun opened with an age identity instead of the passphrase: how
# scheduled backups are meant to run, without the passphrase's deliberate
# 64 MiB scrypt cost. restic has no equivalent; its row repeats its
# passphrase time so the ratio compares the two ways each tool is run.
if has_tool mailvault; then
	age-keygen -o "$W/identity.txt" 2>/dev/null || die "age-keygen failed (apt-get install age)"
	"${MVC[@]}" key add --repo "$R1" --recipient "$(age-keygen -y "$W/identity.txt")" >/dev/null || die "key add failed"
	warm "$DATA"
	timed "no-change backup (age identity)" mailvault "$MV" backup --repo "$R1" --identity "$W/identity.txt" "$DATA"
	if has_tool restic; then
		SECS["no-change backup (age identity).restic"]=${SECS["no-change backup.restic"]}
		RSS["no-change backup (age identity).restic"]=${RSS["no-change backup.restic"]}
	fi
fi
# shellcheck disable=SC2086 # BENCH_MUTATE_ARGS is a list of flags
"$MV" dev mutate-corpus --dir "$DATA" --seed $((BENCH_SEED + 1)) ${BENCH_MUTATE_ARGS:-} --json >"$W/mutate.json" || die "mutate-corpus failed"
log "mutated: $(tr -d ' \n' <"$W/mutate.json")"
backup_step "backup after mutation"

BYTES["full restore"]=$(du -sb "$DATA" | cut -f1)
has_tool mailvault && timed "full restore" mailvault "${MVC[@]}" restore --repo "$R1" latest --target "$W/restore-mailvault"
has_tool restic && timed "full restore" restic "${RC[@]}" -r "$R2" restore latest --target "$W/restore-restic"

# The one-user restore takes the largest mailbox (ties broken by name), so
# that it moves enough data for its time to mean something.
USER_DIR=$(cd "$DATA" && du -sb -- */*/ | LC_ALL=C sort -k1,1nr -k2 | sed -n '1{s|^[0-9]*\t||;s|/$||;p}')
[[ -n $USER_DIR ]] || die "no mailbox found in $DATA"
USER_ADDR="${USER_DIR#*/}@${USER_DIR%%/*}"
BYTES["one-user restore"]=$(du -sb "$DATA/$USER_DIR" | cut -f1)
has_tool mailvault && timed "one-user restore" mailvault "${MVC[@]}" restore --repo "$R1" latest --target "$W/user-mailvault" --user "$USER_ADDR"
has_tool restic && timed "one-user restore" restic "${RC[@]}" -r "$R2" restore latest --target "$W/user-restic" --include "$DATA/$USER_DIR"

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

REPO_BYTES_mailvault=0 REPO_BYTES_restic=0
# repo_bytes TOOL: the bytes of the tool's repository, on disk or in its bucket.
repo_bytes() {
	if [[ $BACKEND == s3 ]]; then
		s3_bucket_bytes "bench-$1"
	elif [[ $1 == mailvault ]]; then
		du -sb "$R1" | cut -f1
	else
		du -sb "$R2" | cut -f1
	fi
}
has_tool mailvault && REPO_BYTES_mailvault=$(repo_bytes mailvault)
has_tool restic && REPO_BYTES_restic=$(repo_bytes restic)

mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
# cell STEP TOOL: seconds, with throughput for steps that move data.
cell() {
	local s=${SECS[$1.$2]:-}
	[[ -n $s ]] || { echo "n/a"; return; }
	case $1 in
	"full backup" | "full restore" | "one-user restore")
		awk -v s="$s" -v b="${BYTES[$1]}" 'BEGIN { printf "%.2f (%.0f MB/s)", s, b / 1e6 / (s > 0 ? s : 0.01) }' ;;
	*) echo "$s" ;;
	esac
}
# ratio STEP: how mailvault compares; >1 is better for the throughput
# ratio (restic time / mailvault time), <1 is better for the time ratio.
ratio() {
	local a=${SECS[$1.mailvault]:-} b=${SECS[$1.restic]:-}
	[[ -n $a && -n $b ]] || { echo "n/a"; return; }
	case $1 in
	"full backup" | "full restore" | "one-user restore")
		awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f× throughput", b / (a > 0 ? a : 0.01) }' ;;
	*) awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f× time", a / (b > 0 ? b : 0.01) }' ;;
	esac
}
rss() { local k=${RSS[$1.$2]:-}; [[ -n $k ]] && awk -v k="$k" 'BEGIN { printf "%.0f MB", k / 1024 }' || echo "n/a"; }
# srvcpu STEP: MinIO's CPU seconds and requests while each tool ran the
# step (S3 only).
srvcpu() {
	[[ $BACKEND == s3 ]] || return 0
	local t out=""
	for t in mailvault restic; do
		[[ -n $out ]] && out+=" / "
		if [[ -n ${SRVCPU[$1.$t]:-} ]]; then
			out+="${SRVCPU[$1.$t]} s, ${SRVREQ[$1.$t]} req"
		else
			out+="n/a"
		fi
	done
	echo " $out |"
}

REPORT=$BENCH_DIR/results-$(date -u +%Y%m%dT%H%M%SZ).md
{
	if [[ $BACKEND == s3 ]]; then
		echo "## mailvault vs restic, repositories in MinIO on 127.0.0.1: Maildir corpus of $BENCH_SIZE (seed $BENCH_SEED)"
	else
		echo "## mailvault vs restic: Maildir corpus of $BENCH_SIZE (seed $BENCH_SEED)"
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
	echo "- mailvault: $(cd "$REPO_ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$REPO_ROOT" && git diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)')"
	echo "- corpus: $(json_field messages) messages in $(json_field files) files ($(json_field fanout_files) fan-out copies, $(json_field attachments) with attachments), $(mb "$(json_field bytes)") MB of mail, $(json_field users) mailboxes"
	echo "- mutation: $(tr -d ' \n' <"$W/mutate.json")"
	echo "- cache: the page cache is warm for both tools (the corpus is read once with tar before each backup; caches cannot be dropped here), and dirty pages are flushed with sync before every step"
	echo
	if [[ $BACKEND == s3 ]]; then
		echo "| step | mailvault s | restic s | ratio (mailvault vs restic) | mailvault peak RSS | restic peak RSS | MinIO CPU, requests (mailvault / restic) |"
		echo "|---|---|---|---|---|---|---|"
	else
		echo "| step | mailvault s | restic s | ratio (mailvault vs restic) | mailvault peak RSS | restic peak RSS |"
		echo "|---|---|---|---|---|---|"
	fi
	for step in "${STEPS[@]}"; do
		echo "| $step | $(cell "$step" mailvault) | $(cell "$step" restic) | $(ratio "$step") | $(rss "$step" mailvault) | $(rss "$step" restic) |$(srvcpu "$step")"
	done
	size_ratio=n/a
	if has_tool mailvault && has_tool restic; then
		size_ratio=$(awk -v a="$REPO_BYTES_mailvault" -v b="$REPO_BYTES_restic" 'BEGIN { printf "%.2f× size", a / (b > 0 ? b : 1) }')
	fi
	echo "| repository size | $(has_tool mailvault && echo "$(mb "$REPO_BYTES_mailvault") MB" || echo n/a) | $(has_tool restic && echo "$(mb "$REPO_BYTES_restic") MB" || echo n/a) | $size_ratio | | |$([[ $BACKEND == s3 ]] && echo ' |')"
	echo
	echo "Throughput ratio = restic time / mailvault time (above 1: mailvault is faster); time ratio = mailvault time / restic time (below 1: mailvault is faster); size ratio = mailvault / restic (below 1: mailvault is smaller). One-user restore: $USER_ADDR ($(mb "${BYTES["one-user restore"]}") MB)."
	if ((${#VERIFY[@]} > 0)); then
		echo
		for v in "${VERIFY[@]}"; do echo "- verify: $v"; done
	fi
} | tee "$REPORT"
echo "compare.sh: report saved to $REPORT" >&2
