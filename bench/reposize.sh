#!/usr/bin/env bash
# reposize.sh — where the bytes of a mailvault and a restic repository go,
# side by side, after one full backup of the same Maildir tree of N small
# messages (issue 11: repository size ≤ restic's on small-message corpora).
#
#   bash bench/reposize.sh                   # 100000 messages
#   bash bench/reposize.sh 100000 300000
#   REPOSIZE_TREE=/var/tmp/mv-1m/tree bash bench/reposize.sh 1000000
#   KEEP=1 bash bench/reposize.sh 100000     # keep tree and restic's repository
#   REPOSIZE_RESTIC=0 ...                     # mailvault only (restic's column empty)
#
# For each size: bench/scalegen writes the tree (seed 1, as bench/scale.sh;
# or REPOSIZE_TREE names an existing one, which is only read), both tools
# back it up once (mailvault: age identity, compression auto; restic:
# --compression auto, repository version 2), and the breakdown is read back
# from the repositories: blobs by type (count, plaintext, stored bytes, from
# the index files), pack headers (pack files minus the blobs they hold:
# headers, encryption), index files, snapshots. restic's stored blob length
# includes its 32 bytes of encryption per blob; mailvault's packs are one
# age file each, so its 16 bytes per 64 KiB of pack are in "pack headers".
# No timing: sizes only, so a busy machine does not matter.
set -euo pipefail

die() { echo "reposize.sh: $*" >&2; exit 1; }
log() { echo "reposize.sh: $(date -u +%H:%M:%S) $*" >&2; }

SIZES=("$@")
((${#SIZES[@]} > 0)) || SIZES=(100000)
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${REPOSIZE_WORK:-/var/tmp/mailvault-reposize}
KEEP=${KEEP:-0}
for t in restic age-keygen jq go; do command -v "$t" >/dev/null || die "$t is needed"; done

mkdir -p "$WORK/bin"
WORK=$(cd "$WORK" && pwd)
(cd "$REPO_ROOT" && go build -o "$WORK/bin/mailvault" ./cmd/mailvault) || die "go build ./cmd/mailvault failed"
(cd "$REPO_ROOT" && go build -o "$WORK/bin/scalegen" ./bench/scalegen) || die "go build ./bench/scalegen failed"
[[ -f $WORK/identity.txt ]] || age-keygen -o "$WORK/identity.txt" 2>/dev/null
RECIPIENT=$(age-keygen -y "$WORK/identity.txt")
export RESTIC_PASSWORD=reposize

files_bytes() { # DIR: count and bytes of the regular files under DIR
	find "$1" -type f ! -name '.tmp-*' -printf '%s\n' | awk '{ n++; s += $1 } END { printf "%d %d\n", n, s }'
}

# blobs_by_type INDEXJSON LENFIELD RAWFIELD: "type count raw stored" lines.
blobs_by_type() {
	jq -s -r --arg raw "$3" '[.[] | .packs[] | .blobs[]] | group_by(.type)[] |
		"\(.[0].type) \(length) \(map(.[$raw] // .length) | add) \(map(.length) | add)"' "$1"
}

mb() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1e6 }'; }

report() { # N MVREPO RESTICREPO
	local n=$1 mv=$2 rr=$3 w=$4
	local MVC=(env MAILVAULT_CACHE_DIR="$w/mailvault-cache" "$WORK/bin/mailvault" --identity "$WORK/identity.txt" --repo "$mv")
	local RC=(restic --cache-dir "$w/restic-cache" -r "$rr")
	: >"$w/idx.mailvault.json"
	for f in "$mv"/index/*; do "${MVC[@]}" cat index "$(basename "$f")" >>"$w/idx.mailvault.json"; done
	: >"$w/idx.restic.json"
	if [[ -f $rr/config ]]; then
		for id in $("${RC[@]}" list index); do "${RC[@]}" cat index "$id" >>"$w/idx.restic.json"; done
	fi
	declare -A M R
	while read -r t c raw st; do M[$t.n]=$c M[$t.raw]=$raw M[$t.st]=$st; done < <(blobs_by_type "$w/idx.mailvault.json" length raw_length)
	while read -r t c raw st; do R[$t.n]=$c R[$t.raw]=$raw R[$t.st]=$st; done < <(blobs_by_type "$w/idx.restic.json" length uncompressed_length)
	local k
	for k in data.n data.raw data.st tree.n tree.raw tree.st; do M[$k]=${M[$k]:-0} R[$k]=${R[$k]:-0}; done
	read -r M[packs] M[data] < <(files_bytes "$mv/data")
	read -r R[packs] R[data] < <(files_bytes "$rr/data")
	read -r M[idxn] M[idx] < <(files_bytes "$mv/index")
	read -r R[idxn] R[idx] < <(files_bytes "$rr/index")
	read -r M[snn] M[snap] < <(files_bytes "$mv/snapshots")
	read -r R[snn] R[snap] < <(files_bytes "$rr/snapshots")
	M[total]=$(du -sb "$mv" | cut -f1)
	R[total]=$(du -sb "$rr" | cut -f1)
	M[hdr]=$((M[data] - M[data.st] - M[tree.st]))
	R[hdr]=$((R[data] - R[data.st] - R[tree.st]))
	local blobs_m=$((M[data.n] + M[tree.n])) blobs_r=$((R[data.n] + R[tree.n]))
	echo
	echo "### $n messages ($(date -u +%Y-%m-%d); mailvault $(cd "$REPO_ROOT" && git log -1 --format=%h), $(restic version | cut -d' ' -f1-2))"
	echo
	echo "| part | mailvault | restic | mailvault per message | restic per message |"
	echo "|---|---|---|---|---|"
	row() { printf '| %s | %s | %s | %s B | %s B |\n' "$1" "$2" "$3" "$(awk -v b="$4" -v n="$n" 'BEGIN { printf "%.1f", b / n }')" "$(awk -v b="$5" -v n="$n" 'BEGIN { printf "%.1f", b / n }')"; }
	row "data blobs: count, MB plaintext → stored" "${M[data.n]}, $(mb "${M[data.raw]}") → $(mb "${M[data.st]}")" "${R[data.n]}, $(mb "${R[data.raw]}") → $(mb "${R[data.st]}")" "${M[data.st]}" "${R[data.st]}"
	row "tree blobs (folder trees/pages, Message-ID index; restic: directories)" "${M[tree.n]}, $(mb "${M[tree.raw]}") → $(mb "${M[tree.st]}")" "${R[tree.n]}, $(mb "${R[tree.raw]}") → $(mb "${R[tree.st]}")" "${M[tree.st]}" "${R[tree.st]}"
	row "pack headers + pack encryption, MB ($(awk -v a="${M[hdr]}" -v b="$blobs_m" 'BEGIN { printf "%.1f", a / b }') / $(awk -v a="${R[hdr]}" -v b="$blobs_r" 'BEGIN { printf "%.1f", a / b }') B a blob)" "$(mb "${M[hdr]}") in ${M[packs]} packs" "$(mb "${R[hdr]}") in ${R[packs]} packs" "${M[hdr]}" "${R[hdr]}"
	row "index files, MB" "$(mb "${M[idx]}") in ${M[idxn]}" "$(mb "${R[idx]}") in ${R[idxn]}" "${M[idx]}" "${R[idx]}"
	row "snapshots, MB" "$(mb "${M[snap]}")" "$(mb "${R[snap]}")" "${M[snap]}" "${R[snap]}"
	row "**repository**, MB" "**$(mb "${M[total]}")**" "**$(mb "${R[total]}")**" "${M[total]}" "${R[total]}"
}

for n in "${SIZES[@]}"; do
	w=$WORK/n$n
	# KEEP=1 keeps the tree and restic's repository for the next run (to
	# measure mailvault changes against the same restic figure).
	rm -rf "$w/mailvault" "$w/mailvault-cache"
	mkdir -p "$w"
	tree=${REPOSIZE_TREE:-$w/tree}
	if [[ -z ${REPOSIZE_TREE:-} && ! -d $tree ]]; then
		log "n=$n: generating $tree"
		"$WORK/bin/scalegen" gen -out "$tree" -n "$n" -seed 1 >/dev/null
	fi
	log "n=$n: mailvault backup"
	env MAILVAULT_CACHE_DIR="$w/mailvault-cache" "$WORK/bin/mailvault" --identity "$WORK/identity.txt" init -q --repo "$w/mailvault" --recipient "$RECIPIENT"
	env MAILVAULT_CACHE_DIR="$w/mailvault-cache" "$WORK/bin/mailvault" --identity "$WORK/identity.txt" backup -q --repo "$w/mailvault" "$tree"
	if [[ ${REPOSIZE_RESTIC:-1} == 0 ]]; then
		mkdir -p "$w/restic/data" "$w/restic/index" "$w/restic/snapshots"
	elif [[ ! -f $w/restic/config ]]; then
		log "n=$n: restic backup"
		rm -rf "$w/restic" "$w/restic-cache"
		restic --cache-dir "$w/restic-cache" init -q --repository-version 2 --repo "$w/restic" >/dev/null
		restic --compression auto --cache-dir "$w/restic-cache" -r "$w/restic" backup -q "$tree"
	fi
	report "$n" "$w/mailvault" "$w/restic" "$w"
	if [[ $KEEP != 1 ]]; then rm -rf "$w"; fi
done
