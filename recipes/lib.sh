# Shell helpers both recipes source: log, run a step, skip a done step, score a system.
# The recipe sets: tag (log prefix), python, logs (a dir: one log per step), commands (a
# file: every command that ran), and optionally repo (stripped from recorded commands).

log() { echo -e "$(date '+%H:%M:%S') [$tag] $*"; }
die() { echo "$(date '+%H:%M:%S') [$tag] ERROR: $*" >&2; exit 1; }

# run_step NAME COMMAND...: COMMAND's whole output in $logs/NAME.log, the command line appended
# to $commands; on failure the log's end is shown and the recipe stops. A fairseq-train that
# logged "done training" has saved its last checkpoint: an abort after that (exit 134 at
# interpreter exit, from a batch-prefetch thread; see --data-buffer-size 0) is reported, not
# taken as a failure; one that did not finish is a failure.
run_step() {
  local name=$1; shift
  local line; line=$(printf '%q ' "$@")
  [ -n "${repo:-}" ] && line=${line//"$repo/"/}
  echo "$line" >> "$commands"
  local rc=0
  "$@" > "$logs/$name.log" 2>&1 || rc=$?
  if [ $rc -eq 134 ] && [[ " $* " == *" fairseq_cli.train "* ]] && grep -q "done training in" "$logs/$name.log"; then
    log "  $name: fairseq-train finished and saved, then aborted at exit (134); continuing"
  elif [ $rc -ne 0 ]; then
    tail -n 30 "$logs/$name.log" >&2
    log "FAILED: $name (exit $rc; full log: $logs/$name.log)"
    exit 1
  fi
}
run() { local name=$1; shift; run_step "$name" "$python" -m "$@"; }  # a stock CLI: python -m MODULE

# A step is done when DIR holds its marker (done-MARK); otherwise fairseq-train resumes from
# DIR's checkpoint_last.pt, so a stopped recipe rerun with the same command goes on.
step_done() { [ -f "$1/done-$2" ]; }
mark_done() { touch "$1/done-$2"; }

# score NAME GENERATE_TXT [BASELINE_GENERATE_TXT [JSON]]: WER, BLEU, chrF (and the paired
# bootstrap against the baseline) into JSON (default: score.json beside GENERATE_TXT); its
# summary lines in the log.
score() {
  local name=$1 system=$2 baseline=${3:-} json=${4:-$(dirname "$2")/score.json}
  local args=("$system"); [ -n "$baseline" ] && args+=("$baseline")
  run "score-$name" fairseq_exporter.cli.score "${args[@]}" --json "$json"
  log "  $name: $(grep -E '^(system|BLEU|chrF2) ' "$logs/score-$name.log" | grep -v ' signature:' | tr -s ' ' | paste -sd ';' -)"
}
