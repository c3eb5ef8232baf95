#!/usr/bin/env bash
# restore-rename.sh: time full restores of one repository with two (or
# more) mailvault binaries, interleaved round by round, to measure what a
# change to restore's write path costs (issue 9: restore's temporary name,
# fsync and rename must cost at most 5 % of full restore throughput).
#
# Usage:
#   bash bench/restore-rename.sh BIN_A BIN_B [BIN_C ...]
#
# Build the binaries first, e.g. the commit before a change and after it:
#   git archive BASE | tar -x -C /tmp/base && (cd /tmp/base && go build -o /tmp/mv-before ./cmd/mailvault)
#   go build -o /tmp/mv-after ./cmd/mailvault
#
# Environment:
#   BENCH_SIZE   corpus size (default 300MB)
#   BENCH_SEED   corpus seed (default 1)
#   BENCH_ROUNDS rounds; each restores once with every binary, the order
#                rotating from round to round (default 5)
#   BENCH_DIR    work directory (default /var/tmp/mailvault-restore-bench);
#                the corpus and repository are kept there between runs
#
# The first binary generates the corpus and makes the backup. Every
# restore is compared with the corpus (diff -r) in the first round. Prints
# one line per restore and a summary: median and best wall seconds and
# MB/s and median CPU seconds (user + system) per binary, with the load
# average before and after, and the quartiles of the per-round ratio of
# each binary's time to the first binary's.
set -euo pipefail

[[ $# -ge 2 ]] || { echo "usage: restore-rename.sh BIN_A BIN_B [BIN_C ...]" >&2; exit 2; }
BINS=("$@")
SIZE=${BENCH_SIZE:-300MB}
SEED=${BENCH_SEED:-1}
ROUNDS=${BENCH_ROUNDS:-5}
D=${BENCH_DIR:-/var/tmp/mailvault-restore-bench}
mkdir -p "$D"
MV=${BINS[0]}

if [[ ! -f $D/ready-$SIZE-$SEED ]]; then
	rm -rf "$D/corpus" "$D/repo" "$D/key.txt" "$D"/ready-*
	"$MV" dev gen-corpus --out "$D/corpus" --size "$SIZE" --seed "$SEED" >/dev/null
	age-keygen -o "$D/key.txt" 2>/dev/null
	"$MV" --repo "$D/repo" init --recipient "$(age-keygen -y "$D/key.txt")" >/dev/null
	"$MV" --repo "$D/repo" --identity "$D/key.txt" --quiet backup "$D/corpus" >/dev/null
	touch "$D/ready-$SIZE-$SEED"
fi
BYTES=$(du -sb "$D/corpus" | cut -f1)
FILES=$(find "$D/corpus" -type f | wc -l)
echo "corpus: $SIZE seed $SEED, $FILES files, $BYTES bytes; $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"

declare -A TIMES CPU
# One untimed restore first: on the reference VM the first restore after a
# pause ran up to four times faster than the ones after it, which would
# favour whichever binary comes first.
"$MV" --repo "$D/repo" --identity "$D/key.txt" --quiet restore latest --target "$D/target" >/dev/null
rm -rf "$D/target"
n=${#BINS[@]}
for ((r = 0; r < ROUNDS; r++)); do
	for ((k = 0; k < n; k++)); do
		i=$(((k + r) % n))
		bin=${BINS[$i]}
		rm -rf "$D/target"
		sync
		# Wall seconds, then CPU seconds (user + system).
		/usr/bin/time -f '%e %U %S' -o "$D/time" \
			"$bin" --repo "$D/repo" --identity "$D/key.txt" --quiet restore latest --target "$D/target" >/dev/null
		read -r s u y <"$D/time"
		cpu=$(echo "$u + $y" | bc)
		if ((r == 0)); then
			# A restore writes the snapshot's tree below the target
			# under the source's absolute path or as the tree itself.
			got=$D/target
			[[ -d $D/target$D/corpus ]] && got=$D/target$D/corpus
			diff -r "$D/corpus" "$got" >/dev/null || { echo "restore by $bin differs from the corpus" >&2; exit 1; }
		fi
		TIMES[$i]+="$s "
		CPU[$i]+="$cpu "
		printf 'round %d %-40s %6.2f s  cpu %6.2f s  load %s\n' "$r" "$bin" "$s" "$cpu" "$(cut -d' ' -f1 /proc/loadavg)"
	done
done
rm -rf "$D/target"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
# Paired ratios: within a round the binaries ran back to back, so a ratio
# of two runs of one round is less disturbed by other load than the
# totals are.
read -r -a base <<<"${TIMES[0]}"
for ((i = 0; i < n; i++)); do
	read -r -a t <<<"${TIMES[$i]}"
	sorted=$(printf '%s\n' "${t[@]}" | sort -n)
	med=$(echo "$sorted" | sed -n "$(((${#t[@]} + 1) / 2))p")
	best=$(echo "$sorted" | head -n1)
	cmed=$(printf '%s\n' ${CPU[$i]} | sort -n | sed -n "$(((${#t[@]} + 1) / 2))p")
	printf '%-40s median %6.2f s (%5.0f MB/s)  best %6.2f s (%5.0f MB/s)  median cpu %6.2f s  all: %s\n' "${BINS[$i]}" "$med" \
		"$(echo "$BYTES / $med / 1000000" | bc -l)" "$best" "$(echo "$BYTES / $best / 1000000" | bc -l)" "$cmed" "${TIMES[$i]}"
done
for ((i = 1; i < n; i++)); do
	read -r -a t <<<"${TIMES[$i]}"
	ratios=$(for ((r = 0; r < ${#t[@]}; r++)); do echo "${t[$r]} / ${base[$r]}" | bc -l; done | sort -n)
	q() { echo "$ratios" | sed -n "$(((${#t[@]} * $1 + 3) / 4))p" | cut -c1-5; }
	printf '%s / %s per round: quartiles %s  median %s  %s\n' "${BINS[$i]}" "${BINS[0]}" "$(q 1)" "$(q 2)" "$(q 3)"
done
