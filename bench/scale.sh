#!/usr/bin/env bash
# scale.sh — mailvault and restic side by side on Maildir trees of N small
# messages (issue 11: scale to ten million messages).
#
#   bash bench/scale.sh                       # 100000 and 300000 messages
#   bash bench/scale.sh 100000 300000 1000000
#   SCALE_HEADERS_ONLY=1 bash bench/scale.sh 10000000
#   SCALE_TOOLS=mailvault SCALE_TREE=/mnt/big bash bench/scale.sh 10000000
#
# SCALE_TOOLS: "mailvault restic" (default) or one of them; the other's
# cells read n/a. SCALE_TREE: a directory where `scalegen gen -out
# DIR/tree` already wrote the tree of the one size given, with its output
# in DIR/gen.json — for 10 M messages, which take half an hour to write
# and ~41 GB in 4 KiB blocks (a file system with 1 KiB blocks holds the
# headers-only tree in ~13 GB). The run mutates that tree and leaves it.
#
# For each size: bench/scalegen writes the tree (N/1000 users, four folders
# each), then both tools, one after the other, run: full backup; no-change
# backup; 1,000 flag changes + 1,000 new messages, backup; 1 % of the
# messages changed (half of it flag changes, a quarter new, a quarter
# deleted), backup; restore of one message (mailvault by Message-ID,
# restic by path); check --read-data;
# repository size. Every step starts with a synced disk and dropped page
# cache (root needed; SCALE_DROP_CACHES=0 runs warm and says so), under GNU
# time for wall seconds and peak RSS. One markdown table at the end, with the
# machine and its load. See bench/README.md.
set -euo pipefail

die() { echo "scale.sh: $*" >&2; exit 1; }
log() { echo "scale.sh: $(date -u +%H:%M:%S) $*" >&2; }

SIZES=("$@")
((${#SIZES[@]} > 0)) || SIZES=(100000 300000)
for n in "${SIZES[@]}"; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || die "sizes are message counts (e.g. 100000 300000), got '$n'"
done

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCALE_WORK=${SCALE_WORK:-/var/tmp/mailvault-scale}
SCALE_SEED=${SCALE_SEED:-1}
SCALE_HEADERS_ONLY=${SCALE_HEADERS_ONLY:-0}
SCALE_DROP_CACHES=${SCALE_DROP_CACHES:-1}
SCALE_FLAG_CHANGES=${SCALE_FLAG_CHANGES:-1000}
SCALE_NEW=${SCALE_NEW:-1000}
KEEP=${KEEP:-0}
SCALE_TOOLS=${SCALE_TOOLS:-mailvault restic}
SCALE_TREE=${SCALE_TREE:-}
for t in $SCALE_TOOLS; do
	[[ $t == mailvault || $t == restic ]] || die "unknown tool in SCALE_TOOLS: $t"
done
has_tool() { [[ " $SCALE_TOOLS " == *" $1 "* ]]; }
if [[ -n $SCALE_TREE ]]; then
	((${#SIZES[@]} == 1)) || die "SCALE_TREE takes one size"
	[[ -d $SCALE_TREE/tree && -f $SCALE_TREE/gen.json ]] || die "SCALE_TREE=$SCALE_TREE: no tree/ and gen.json from scalegen gen there"
	SCALE_TREE=$(cd "$SCALE_TREE" && pwd)
fi

# --- tools -------------------------------------------------------------------

# need PROGRAM PACKAGE installs what a fresh Debian lacks.
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	[[ $(id -u) == 0 ]] || die "$1 is missing (apt-get install $2, as root)"
	log "installing $2"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$2" >/dev/null; } ||
		die "cannot install $2 (for $1)"
}
need /usr/bin/time time
has_tool restic && need restic restic
need age-keygen age
command -v go >/dev/null || die "go is needed to build mailvault and bench/scalegen (https://go.dev/dl; Debian's golang-go may be too old for go.mod)"

if [[ $SCALE_DROP_CACHES == 1 && ! -w /proc/sys/vm/drop_caches ]]; then
	die "dropping the page cache before each step needs root (/proc/sys/vm/drop_caches); run as root, or SCALE_DROP_CACHES=0 for a warm-cache run"
fi

# --- work directory and free space ---------------------------------------------

mkdir -p "$SCALE_WORK" || die "cannot create SCALE_WORK=$SCALE_WORK"
SCALE_WORK=$(cd "$SCALE_WORK" && pwd)
# Runs sharing a work directory take turns; two at once would spoil each
# other's figures and disk estimate.
exec 9>"$SCALE_WORK/.lock"
flock -n 9 || { log "another scale.sh holds $SCALE_WORK/.lock; waiting"; flock 9; }

# What one size needs on disk, per message: the tree (one 4 KiB block per
# file plus directories), each repository about 2 KB compressed (less
# headers-only), restic's cache, and the mutation. Measured at 100k
# messages: tree 406 MB; the rest is margin.
per_msg=14000
[[ $SCALE_HEADERS_ONLY == 1 ]] && per_msg=7000
# A tree made beforehand lives elsewhere: the repositories need ~3 KB a
# message each (less headers-only).
[[ -n $SCALE_TREE ]] && per_msg=$(($(wc -w <<<"$SCALE_TOOLS") * 3000))
need_bytes=0
for n in "${SIZES[@]}"; do
	b=$((n * per_msg))
	if [[ $KEEP == 1 ]]; then
		need_bytes=$((need_bytes + b))
	elif ((b > need_bytes)); then
		need_bytes=$b # sizes run one after the other, each removed after
	fi
done
avail=$(df -B1 --output=avail "$SCALE_WORK" | tail -n1 | tr -d ' ')
if ((avail < need_bytes)); then
	die "$SCALE_WORK has $((avail / 1000000000)) GB free, the run needs about $((need_bytes / 1000000000 + 1)) GB ($per_msg bytes a message$([[ $KEEP == 1 ]] && echo ', all sizes kept since KEEP=1')); set SCALE_WORK to a bigger file system or run smaller sizes"
fi

RUN=$SCALE_WORK/run-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RUN/bin"
cleanup() {
	local rc=$?
	if [[ $KEEP == 1 ]]; then
		log "KEEP=1: trees, repositories and logs kept in $RUN"
	else
		log "removing trees and repositories (logs and report stay in $RUN)"
		# The logs and the report stay; trees, repositories and restores go.
		rm -rf "$RUN"/n*/tree "$RUN"/n*/repo-* "$RUN"/n*/restore-* "$RUN"/n*/restic-cache "$RUN"/n*/mailvault-cache "${RUN:?}/bin" "${RUN:?}/identity.txt"
	fi
	exit $rc
}
trap cleanup EXIT

log "building mailvault and scalegen"
(cd "$REPO_ROOT" && go build -o "$RUN/bin/mailvault" ./cmd/mailvault) || die "go build ./cmd/mailvault failed"
(cd "$REPO_ROOT" && go build -o "$RUN/bin/scalegen" ./bench/scalegen) || die "go build ./bench/scalegen failed"
MV=$RUN/bin/mailvault
GEN=$RUN/bin/scalegen
age-keygen -o "$RUN/identity.txt" 2>/dev/null || die "age-keygen failed"
RECIPIENT=$(age-keygen -y "$RUN/identity.txt")

RESTIC_OPTS=()
RESTIC_INIT_OPTS=()
# Compression (repository format 2) came with restic 0.14.
if restic --help 2>&1 | grep -q -- '--compression'; then
	RESTIC_OPTS+=(--compression auto)
	RESTIC_INIT_OPTS+=(--repository-version 2)
fi

machine() {
	echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ { printf "%.1f GB RAM", $2 / 1048576 }' /proc/meminfo)"
	echo "- disk: $SCALE_WORK on $(df --output=fstype "$SCALE_WORK" | tail -n1 | tr -d ' ') ($(df --output=source "$SCALE_WORK" | tail -n1)), $(df -h --output=size,avail "$SCALE_WORK" | tail -n1 | awk '{ print $1 " total, " $2 " free" }')"
	# The engine's commit is the last one outside bench/ and docs/: what
	# the figures are figures of.
	echo "- kernel: $(uname -sr); $(go version); $(has_tool restic && restic version | cut -d' ' -f1-2 || echo 'restic not run'); mailvault $(cd "$REPO_ROOT" && git log -1 --format=%h -- . ':!bench' ':!docs' 2>/dev/null || echo unknown)$(cd "$REPO_ROOT" && git diff --quiet HEAD -- . ':!bench' ':!docs' 2>/dev/null || echo ' with uncommitted changes')"
}
START_UPTIME=$(uptime)
START_MACHINE=$(machine)

# --- measurement -----------------------------------------------------------------

declare -A SECS RSS ADDED REPO GENINFO
LOADS=()

# cold empties the page cache so that every step reads from the disk, as a
# nightly backup of a big server does (its tree does not stay cached).
cold() {
	sync
	if [[ $SCALE_DROP_CACHES == 1 ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
}

# timed KEY TOOL CMD... runs CMD cold under GNU time; KEY is "size.step".
timed() {
	local key=$1 tool=$2
	shift 2
	cold
	local tf="$W/time.${key#*.}.$tool" lf="$W/log.${key#*.}.$tool"
	LOADS+=("$(cut -d' ' -f1 /proc/loadavg)")
	log "n=${key%%.*} ${key#*.}: $tool (load $(cut -d' ' -f1-3 /proc/loadavg))"
	if ! /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$lf" 2>&1; then
		echo "--- $tool failed in '${key#*.}' at n=${key%%.*}: $*" >&2
		tail -n 30 "$lf" >&2
		die "$tool failed (log: $lf; KEEP=1 keeps the tree and repositories)"
	fi
	local secs rss
	read -r secs rss < <(tail -n1 "$tf")
	SECS["$key.$tool"]=$secs
	RSS["$key.$tool"]=$rss
}

repo_bytes() { du -sb "$1" | cut -f1; }

# backup_step KEY: both tools back up the tree; records the bytes each
# repository grew by.
backup_step() {
	local key=$1 b0
	if has_tool mailvault; then
		b0=$(repo_bytes "$R1")
		timed "$key" mailvault "${MVC[@]}" backup --repo "$R1" "$TREE"
		ADDED["$key.mailvault"]=$(($(repo_bytes "$R1") - b0))
	fi
	if has_tool restic; then
		b0=$(repo_bytes "$R2")
		timed "$key" restic "${RC[@]}" -r "$R2" backup "$TREE"
		ADDED["$key.restic"]=$(($(repo_bytes "$R2") - b0))
	fi
}

json_str() { grep -o "\"$1\": *\"[^\"]*\"" "$2" | sed -n 1p | sed 's/^[^:]*: *"//; s/"$//'; }
json_num() { grep -o "\"$1\": *[0-9.]*" "$2" | sed -n 1p | grep -o '[0-9.]*$'; }

STEPS=("full backup" "no-change backup" "flags + new, backup" "1 % changed, backup" "restore one message" "check --read-data")
HO=()
[[ $SCALE_HEADERS_ONLY == 1 ]] && HO=(-headers-only)

for n in "${SIZES[@]}"; do
	W=$RUN/n$n
	TREE=$W/tree
	[[ -n $SCALE_TREE ]] && TREE=$SCALE_TREE/tree
	R1=$W/repo-mailvault
	R2=$W/repo-restic
	mkdir -p "$W"
	MVC=(env MAILVAULT_CACHE_DIR="$W/mailvault-cache" "$MV" --identity "$RUN/identity.txt")
	RC=(env RESTIC_PASSWORD=bench restic "${RESTIC_OPTS[@]}" --cache-dir "$W/restic-cache")

	if [[ -n $SCALE_TREE ]]; then
		log "n=$n: the tree made beforehand in $SCALE_TREE"
		cp "$SCALE_TREE/gen.json" "$W/gen.json"
		[[ $(json_num messages "$W/gen.json") == "$n" ]] || die "$SCALE_TREE/gen.json is not a tree of $n messages"
	else
		log "n=$n: generating the tree"
		"$GEN" gen -out "$TREE" -n "$n" -seed "$SCALE_SEED" "${HO[@]}" >"$W/gen.json" 2>"$W/gen.log" || { cat "$W/gen.log" >&2; die "scalegen gen failed"; }
	fi
	GENINFO[$n]="$(json_num messages "$W/gen.json") messages, $(json_num users "$W/gen.json") users, $(json_num in_new "$W/gen.json") in new/, $(json_num shared_body_messages "$W/gen.json") with a shared body, $(json_num odd_names "$W/gen.json") odd names, $(awk -v b="$(json_num bytes "$W/gen.json")" 'BEGIN { printf "%.0f MB", b / 1e6 }') of mail, generated in $(awk -v s="$(json_num seconds "$W/gen.json")" 'BEGIN { printf "%.1f s", s }')"
	log "n=$n: ${GENINFO[$n]}"
	PROBE_ID=$(json_str message_id "$W/gen.json")
	PROBE_PATH=$(json_str path "$W/gen.json")
	PROBE_FLAGS=$(json_str flags "$W/gen.json")
	[[ -n $PROBE_ID && -f $TREE/$PROBE_PATH ]] || die "scalegen gave no usable probe message ($W/gen.json)"

	if has_tool mailvault; then
		"${MVC[@]}" init -q --repo "$R1" --recipient "$RECIPIENT" >"$W/log.init.mailvault" 2>&1 || { cat "$W/log.init.mailvault" >&2; die "mailvault init failed"; }
	fi
	if has_tool restic; then
		"${RC[@]}" init --repo "$R2" "${RESTIC_INIT_OPTS[@]}" >"$W/log.init.restic" 2>&1 || { cat "$W/log.init.restic" >&2; die "restic init failed"; }
	fi

	backup_step "$n.full backup"
	backup_step "$n.no-change backup"
	"$GEN" mutate -dir "$TREE" -seed $((SCALE_SEED + 1)) -flag-changes "$SCALE_FLAG_CHANGES" -new "$SCALE_NEW" -keep "$PROBE_PATH" "${HO[@]}" >"$W/mutate.json" ||
		die "scalegen mutate failed"
	backup_step "$n.flags + new, backup"
	# 1 % of the messages: N/200 flag changes, N/400 new, N/400 deleted
	# (a nightly backup of a busy server), the probe untouched.
	"$GEN" mutate -dir "$TREE" -seed $((SCALE_SEED + 2)) -flag-changes $((n / 200)) -new $((n / 400)) -delete $((n / 400)) -keep "$PROBE_PATH" "${HO[@]}" >"$W/mutate-1pct.json" ||
		die "scalegen mutate (1 %) failed"
	backup_step "$n.1 % changed, backup"

	if has_tool mailvault; then
		timed "$n.restore one message" mailvault "${MVC[@]}" restore --repo "$R1" latest --target "$W/restore-mailvault" --message "$PROBE_ID"
		got=$(cd "$W/restore-mailvault" && find . -type f -path '*/cur/*' | sed 's|^\./||')
		[[ $got == "$PROBE_PATH" ]] || die "mailvault restored '$got' for $PROBE_ID, expected $PROBE_PATH"
		[[ ${got##*:2,} == "$PROBE_FLAGS" ]] || die "mailvault restored flags '${got##*:2,}', expected '$PROBE_FLAGS'"
		cmp -s "$W/restore-mailvault/$got" "$TREE/$PROBE_PATH" || die "mailvault's restored $got differs from the source"
	fi
	if has_tool restic; then
		timed "$n.restore one message" restic "${RC[@]}" -r "$R2" restore latest --target "$W/restore-restic" --include "$TREE/$PROBE_PATH"
		cmp -s "$W/restore-restic$TREE/$PROBE_PATH" "$TREE/$PROBE_PATH" || die "restic did not restore $PROBE_PATH as it is"
	fi

	has_tool mailvault && timed "$n.check --read-data" mailvault "${MVC[@]}" check --repo "$R1" --read-data
	has_tool restic && timed "$n.check --read-data" restic "${RC[@]}" -r "$R2" check --read-data

	has_tool mailvault && REPO["$n.mailvault"]=$(repo_bytes "$R1")
	has_tool restic && REPO["$n.restic"]=$(repo_bytes "$R2")
	# The next size needs the disk; the last one is removed by the exit
	# trap, after the report (a million files take minutes to delete).
	if [[ $KEEP != 1 && $n != "${SIZES[-1]}" ]]; then
		log "n=$n: removing the tree and repositories"
		rm -rf "$W/tree" "$R1" "$R2" "$W"/restore-* "$W/restic-cache" "$W/mailvault-cache"
	fi
done

# --- report ------------------------------------------------------------------------

# label N: 100000 → 100k, 1000000 → 1M, others as they are.
label() {
	if (($1 % 1000000 == 0)); then echo "$(($1 / 1000000))M"
	elif (($1 % 1000 == 0)); then echo "$(($1 / 1000))k"
	else echo "$1"; fi
}
mb() { if [[ -n $1 ]]; then awk -v b="$1" 'BEGIN { printf "%.0f MB", b / 1e6 }'; else echo n/a; fi; }
# one KEY TOOL: "14.7 s, 165 MB" (+ bytes added for backups).
one() {
	local s=${SECS[$1.$2]:-}
	[[ -n $s ]] || { echo "n/a"; return; }
	printf '%s s, %s' "$s" "$(awk -v k="${RSS[$1.$2]}" 'BEGIN { printf "%.0f MB", k / 1024 }')"
	[[ -n ${ADDED[$1.$2]:-} ]] && printf ', +%s' "$(mb "${ADDED[$1.$2]}")"
	return 0
}
# growth STEP TOOL: change per 100k messages between the first and last size.
growth() {
	local a=${SIZES[0]} b=${SIZES[-1]} k=$1 t=$2
	[[ -n ${SECS[$a.$k.$t]:-} && -n ${SECS[$b.$k.$t]:-} ]] || { echo n/a; return; }
	awk -v s0="${SECS[$a.$k.$t]}" -v s1="${SECS[$b.$k.$t]}" -v r0="${RSS[$a.$k.$t]}" -v r1="${RSS[$b.$k.$t]}" \
		-v a0="${ADDED[$a.$k.$t]:-}" -v a1="${ADDED[$b.$k.$t]:-}" -v d="$(((b - a) / 1000))" '
		BEGIN {
			f = 100 / d
			printf "%+.1f s, %+.0f MB", (s1 - s0) * f, (r1 - r0) / 1024 * f
			if (a0 != "") printf ", %+.0f MB", (a1 - a0) / 1e6 * f
		}'
}

END_UPTIME=$(uptime)
REPORT=$RUN/scale-results.md
{
	echo "## Scale: mailvault vs restic at $(printf '%s, ' "${SIZES[@]}" | sed 's/, $//') messages$([[ $SCALE_HEADERS_ONLY == 1 ]] && echo ' (headers only)')"
	echo
	echo "- command: \`bash bench/scale.sh ${SIZES[*]}\`$([[ $SCALE_HEADERS_ONLY == 1 ]] && echo ' with SCALE_HEADERS_ONLY=1'), seed $SCALE_SEED"
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo "$START_MACHINE"
	echo "- uptime at start: $START_UPTIME"
	echo "- uptime at end: $END_UPTIME"
	echo "- 1-minute load before each step: between $(printf '%s\n' "${LOADS[@]}" | sort -g | sed -n '1p;$p' | paste -sd' ' | sed 's/ / and /')"
	echo "- restic options: ${RESTIC_OPTS[*]} (cache in the work directory); mailvault: age identity, compression auto"
	echo "- cache: $([[ $SCALE_DROP_CACHES == 1 ]] && echo 'sync and drop_caches before every step (cold reads)' || echo 'warm: page cache not dropped (SCALE_DROP_CACHES=0)')"
	for n in "${SIZES[@]}"; do echo "- tree $n: ${GENINFO[$n]}"; done
	echo "- change before the third backup: $SCALE_FLAG_CHANGES flag changes (renames) + $SCALE_NEW new messages in new/; before the fourth, 1 % of N: N/200 flag changes + N/400 new + N/400 deleted (seed + 2)"
	echo
	printf '| step |'
	for n in "${SIZES[@]}"; do printf ' %s: mailvault / restic |' "$(label "$n")"; done
	((${#SIZES[@]} > 1)) && printf ' growth per 100k (mailvault / restic) |'
	echo
	printf '|---|'
	for _ in "${SIZES[@]}"; do printf -- '---|'; done
	((${#SIZES[@]} > 1)) && printf -- '---|'
	echo
	for step in "${STEPS[@]}"; do
		printf '| %s |' "$step"
		for n in "${SIZES[@]}"; do printf ' %s / %s |' "$(one "$n.$step" mailvault)" "$(one "$n.$step" restic)"; done
		((${#SIZES[@]} > 1)) && printf ' %s / %s |' "$(growth "$step" mailvault)" "$(growth "$step" restic)"
		echo
	done
	printf '| repository size |'
	for n in "${SIZES[@]}"; do printf ' %s / %s |' "$(mb "${REPO[$n.mailvault]:-}")" "$(mb "${REPO[$n.restic]:-}")"; done
	if ((${#SIZES[@]} > 1)) && has_tool mailvault && has_tool restic; then
		a=${SIZES[0]} b=${SIZES[-1]}
		awk -v m0="${REPO[$a.mailvault]}" -v m1="${REPO[$b.mailvault]}" -v r0="${REPO[$a.restic]}" -v r1="${REPO[$b.restic]}" -v d="$(((b - a) / 1000))" \
			'BEGIN { f = 100 / d; printf " %+.0f MB / %+.0f MB |", (m1 - m0) / 1e6 * f, (r1 - r0) / 1e6 * f }'
	elif ((${#SIZES[@]} > 1)); then
		printf ' n/a |'
	fi
	echo
	echo
	echo "Cells: wall seconds, peak RSS, and for backups the bytes the repository grew by. Growth: the change from ${SIZES[0]} to ${SIZES[-1]} messages, per 100k messages. Restore: mailvault \`restore --message <Message-ID>\` (checked: exactly that file, in its folder, with its flags) against \`restic restore --include <path>\`; both checked byte for byte against the source."
} | tee "$REPORT"
log "report saved to $REPORT"
