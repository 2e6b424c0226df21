#!/usr/bin/env bash
# The toy study: does an exporter-coupled cascade beat the 1-best cascade with the MT frozen,
# and does the gain go away once the MT is adapted to the task? (Chelba & Schalkwyk 2024)
# As in the paper, the exporter reads the ASR encoder frames of each token's CTC segment and the
# 1-best is the CTC head's (--exporter-source ctc). Stage 5 also trains a control: stage 2's ASR
# updates on the transcript loss alone. Stage 8 repeats stages 1-2 on the ASR's attention decoder
# (--exporter-source decoder) and adds posterior coupling.
#
# Everything is generated from a seed (grammar text, espeak-ng speech), nothing downloaded, and
# the same seed on the same machine and thread count gives the same numbers, bit for bit.
#   bash recipes/toy/run.sh                     # the study, stages 0-7, seed 1 (make demo)
#   bash recipes/toy/run.sh --seeds 1,2,3       # the study per seed + one report over them
#                                               # (work/toy-seeds, results/toy-seeds)
#   bash recipes/toy/run.sh --stage 8 --stop-stage 8    # then the extra rows
#   bash recipes/toy/run.sh --stage 9 --stop-stage 9    # a frozen instruct LM as the text model
#   bash recipes/toy/run.sh --stage 10 --stop-stage 10  # the ablations (exporter only, text-only adaptation) of stages 5 and 9
#   bash recipes/toy/run.sh --stage 11 --stop-stage 11  # a frozen Hugging Face encoder-decoder MT (Marian)
#   bash recipes/toy/run.sh --stage 12 --stop-stage 12  # the paper's table-free exporter: stages 1-2, exporter only
#   bash recipes/toy/run.sh --tune              # the dev protocol: the grid behind every default, dev only
#                                               # -> results/toy/tune.{md,json} (its "selected" settings)
#   bash recipes/toy/run.sh --tune-table-free   # then stage 12's: -> results/toy/tune-table-free.{md,json}
#   bash recipes/toy/run.sh --scale quick --stop-stage 8   # a tiny version (the test suite runs it)
#   bash recipes/toy/run.sh --stage 5           # rerun from a stage; done steps are skipped
#   bash recipes/toy/run.sh --asr-updates 1600 --work work/toy-1600 --results results/toy-1600
#                                               # a shorter-trained ASR (a new --work: its lr decays
#                                               # to the end of the budget)
# Options: --stage N, --stop-stage N (0-12), --scale full|quick, --seed N | --seeds N,N[,...],
# --work DIR, --results DIR, --tune, --tune-table-free, --settings FILE (the tuned settings; default
# at full scale: recipes/toy/results/tune.json, written by --tune), --table-free-settings FILE (stage
# 12's; default at full scale: recipes/toy/results/tune-table-free.json, written by
# --tune-table-free), --asr-updates N, --stage2-updates N (stage 2, its control and stage 3). Stages
# are listed in the recipe README.
set -euo pipefail
{  # bash reads the whole script before it runs: editing it during a run does not change the run

stage=0
stop_stage=7        # stages 8-12 (extra rows beyond the paper's table, ablations) only when asked
tune=               # --tune: the dev protocol instead of the study
tune_table_free=    # --tune-table-free: stage 12's dev protocol (on --tune's selected ASR)
settings=           # --settings FILE: the tuned settings (a tune.json)
tf_settings=        # --table-free-settings FILE: stage 12's (a tune-table-free.json)
scale=full          # full | quick
seed=1
work=work/toy
results=results/toy
python=${PYTHON:-}
asr_updates_asked=
stage2_updates_asked=
seeds=              # --seeds 1,2,3: the study once per seed, then one report over them
seed_given=; work_given=; results_given=
passed=()           # the options each seed's run gets

tag=toy
source "$(dirname "$0")/../lib.sh"  # log, run, step_done, mark_done, score
started=$(date +%s)
elapsed() { local s=$(( $(date +%s) - started )); printf '%d min %02d s' $((s / 60)) $((s % 60)); }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --tune) tune=1; shift; continue ;;
    --tune-table-free) tune_table_free=1; shift; continue ;;
    --*) [ $# -ge 2 ] || { echo "$1 needs a value (see bash $0 --help)" >&2; exit 2; } ;;
  esac
  [ "$1" = --seeds ] || [ "$1" = --seed ] || [ "$1" = --work ] || [ "$1" = --results ] || passed+=("$1" "$2")
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --seed) seed=$2; seed_given=1; shift 2 ;;
    --work) work=$2; work_given=1; shift 2 ;;
    --results) results=$2; results_given=1; shift 2 ;;
    --asr-updates) asr_updates_asked=$2; shift 2 ;;
    --stage2-updates) stage2_updates_asked=$2; shift 2 ;;
    --settings) settings=$2; shift 2 ;;
    --table-free-settings) tf_settings=$2; shift 2 ;;
    *) echo "unknown option $1 (see bash $0 --help)" >&2; exit 2 ;;
  esac
done
for opt in stage stop_stage; do
  [[ "${!opt}" =~ ^([0-9]|1[012])$ ]] || { echo "--${opt/_/-} must be a stage number 0-12, not '${!opt}'" >&2; exit 2; }
done
[ "$stage" -le "$stop_stage" ] || {
  echo "--stage $stage is after --stop-stage $stop_stage: nothing to run (stages 8-12 run only with --stop-stage 8 to 12)" >&2; exit 2; }
[ -z "$tune$tune_table_free" ] || [ -z "$seeds" ] || { echo "--tune and --tune-table-free run on one seed (the protocol selects on seed 1's dev set): give --seed, not --seeds" >&2; exit 2; }
[ -z "$tune" ] || [ -z "$tune_table_free" ] || { echo "give --tune, then --tune-table-free (it reads --tune's selected ASR): not both at once" >&2; exit 2; }
[ -z "$settings" ] || [ -f "$settings" ] || { echo "--settings $settings: no such file (write one with --tune)" >&2; exit 2; }
[ -z "$tf_settings" ] || [ -f "$tf_settings" ] || { echo "--table-free-settings $tf_settings: no such file (write one with --tune-table-free)" >&2; exit 2; }
[[ "$seed" =~ ^[0-9]+$ ]] || { echo "--seed must be a non-negative integer, not '$seed'" >&2; exit 2; }
for opt in asr_updates stage2_updates; do
  asked=${opt}_asked
  [ -z "${!asked}" ] || [[ "${!asked}" =~ ^[1-9][0-9]*$ ]] || {
    echo "--${opt/_/-} must be a positive integer, not '${!asked}'" >&2; exit 2; }
done
case "$scale" in full|quick) ;; *) echo "--scale must be full or quick, not '$scale'" >&2; exit 2 ;; esac
[ -z "$seeds" ] || [[ "$seeds" =~ ^[0-9]+(,[0-9]+)+$ ]] || {
  echo "--seeds must be two or more comma-separated seeds (e.g. 1,2,3), not '$seeds'" >&2; exit 2; }
[ -z "$seeds" ] || [ -z "$(tr ',' '\n' <<< "$seeds" | sort | uniq -d)" ] || {
  echo "--seeds lists a seed twice: '$seeds'" >&2; exit 2; }
[ -z "$seeds" ] || [ -z "$seed_given" ] || { echo "give --seed or --seeds, not both" >&2; exit 2; }
if [ -n "$seeds" ]; then  # the multi-seed study has its own dirs: make demo's stay as they are
  [ -n "$work_given" ] || work=work/toy-seeds
  [ -n "$results_given" ] || results=results/toy-seeds
fi
repo=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "$python" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then python=$repo/.venv/bin/python; else python=python3; fi
fi
if [ -n "$seeds" ]; then  # each seed is its own study in WORK/seedN, RESULTS/seedN
  summary_inputs=()
  for s in ${seeds//,/ }; do
    log "seed $s: bash $0 ${passed[*]} --seed $s --work $work/seed$s --results $results/seed$s"
    bash "$0" "${passed[@]}" --seed "$s" --work "$work/seed$s" --results "$results/seed$s"
    summary_inputs+=("$results/seed$s")
  done
  if [ "$stop_stage" -ge 7 ]; then
    "$python" -m fairseq_exporter.toy.report --summary "${summary_inputs[@]}" --out "$results"
    log "wrote $results/results.md, results.json and seeds.png over seeds $seeds ($(elapsed))"
  fi
  exit 0
fi
user_dir=$repo/fairseq_exporter
data=$work/data
st=$data/st
mkdir -p "$work/logs" "$work/gen" "$results"
commands=$work/commands.sh
logs=$work/logs
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
# The bits depend on the CPU's code path: pinned where the libraries allow (AVX2 on any CPU that
# has it: an AVX-512 machine then computes what an AVX2 one does), and every invocation's machine
# facts go to WORK/machine.jsonl for the report (fairseq_exporter/toy/provenance.py)
# (run as a file: importing the package would load fairseq, seconds per invocation)
provenance=("$python" "$repo/fairseq_exporter/toy/provenance.py")
pins=$("${provenance[@]}" pins 2> "$logs/pins.txt") || { cat "$logs/pins.txt" >&2; exit 1; }
eval "$pins"
log "CPU code path $(cat "$logs/pins.txt"); $OMP_NUM_THREADS threads"
"${provenance[@]}" record "$work" --stages "$([ -n "$tune" ] && echo tune || { [ -n "$tune_table_free" ] && echo tune-table-free; } || echo "$stage-$stop_stage")"

# Sizes. full: the study; quick: every stage, tiny models (minutes: ~45 fairseq start-ups).
if [ "$scale" = full ]; then
  mt_arch=(--encoder-layers 2 --decoder-layers 2 --encoder-embed-dim 128 --decoder-embed-dim 128
           --encoder-ffn-embed-dim 512 --decoder-ffn-embed-dim 512 --encoder-attention-heads 4 --decoder-attention-heads 4)
  mt_updates=300; mt_adapt_updates=100
  asr_arch=(--encoder-layers 4 --decoder-layers 2 --encoder-embed-dim 144 --decoder-embed-dim 144
            --encoder-ffn-embed-dim 576 --decoder-ffn-embed-dim 576 --encoder-attention-heads 4
            --decoder-attention-heads 4 --conv-channels 256)
  # The ASR is what the 20-minute budget buys least of; small batches make the most of it
  # (calibration in the recipe README). Its update budget, stage 2's and the control's updates and
  # learning rates and the exporter type come from the settings file (--tune writes it).
  asr_warmup=150; max_tokens_asr=4000; asr_lr=3e-3; asr_end_lr=1e-5
  stage1_updates=50; valid_every=100
  # the dev protocol's grid (--tune): stage-2 and control budgets are read off one run per lr
  # (validated every $valid_every updates; inverse_sqrt does not depend on the budget)
  grid_asr_updates=(2400 4800); grid_exporters=(vocab mlp); grid_lrs=(2e-4 4e-4); grid_base_lr=2e-4; grid_budgets=(200 400 800)
  grid_text_lrs=(5e-4 1e-3 2e-3); grid_text_budgets=(100 200 400); text_valid_every=50
  # stage 12's protocol (--tune-table-free): a table-free exporter is a network trained from scratch
  # (not a copy of the MT's table): its stage 1 takes the lr the recipe trains its other models from
  # scratch with and a longer budget (validated every $tf_stage1_valid_every updates), kept at its
  # lowest dev L2; then stage 2 as above; then the transcript-loss weight under finding (d)
  tf_grid_exporters=(mlp transformer); tf_stage1_lrs=(3e-3); tf_stage1_budgets=(800 1600 3200); tf_stage1_valid_every=400
  tf_asr_weights=(0.3 1); tf_base_asr_weight=0.3
  # stage 2's lrs: the study's, extended upwards (the protocol selected the largest, 4e-4)
  tf_grid_lrs=(2e-4 4e-4 8e-4)
  max_tokens_mt=4096; max_tokens_st=10000
  onebest_max_len=40; gen_len=()
  lm_updates=800; lm_arch=(--layers 3 --dim 128)  # stage 9's instruct LM
  hf_mt_updates=400; hf_mt_arch=(--layers 2 --dim 128)  # stage 11's Marian MT: the fairseq MT's size
else
  mt_arch=(--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 --decoder-embed-dim 32
           --encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --encoder-attention-heads 2 --decoder-attention-heads 2)
  mt_updates=20; mt_adapt_updates=5
  asr_arch=(--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 --decoder-embed-dim 32
            --encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --encoder-attention-heads 2
            --decoder-attention-heads 2 --conv-channels 32)
  asr_warmup=10; max_tokens_asr=20000; asr_lr=2e-3; asr_end_lr=1e-5
  stage1_updates=4; valid_every=2
  asr_updates=20; exporter_type=vocab; stage2_lr=2e-4; stage2_updates=4; control_lr=2e-4; control_updates=4
  # the grid at its smallest that still chooses: an ASR budget, an exporter type, a budget each
  grid_asr_updates=(10 20); grid_exporters=(vocab mlp); grid_lrs=(2e-4); grid_base_lr=2e-4; grid_budgets=(2 4)
  grid_text_lrs=(5e-4); grid_text_budgets=(2 4); text_valid_every=2; text_only_lr=5e-4; text_only_updates=4
  tf_grid_exporters=(mlp transformer); tf_stage1_lrs=(1e-3); tf_stage1_budgets=(2 4); tf_stage1_valid_every=2
  tf_asr_weights=(0.3 1); tf_base_asr_weight=0.3; tf_grid_lrs=(2e-4)
  tf_exporter_type=mlp; tf_stage1_lr=1e-3; tf_stage1_updates=4; tf_stage2_lr=2e-4; tf_stage2_updates=4; tf_asr_weight=0.3
  max_tokens_mt=4096; max_tokens_st=20000
  onebest_max_len=12; gen_len=(--max-len-b 12)  # barely trained models babble: cap their output
  lm_updates=10; lm_arch=(--layers 1 --dim 32)
  hf_mt_updates=10; hf_mt_arch=(--layers 1 --dim 32)
fi
# The tuned settings: at full scale from the committed tune.json (what `--tune` selected on seed 1's
# dev set) unless --settings names another; at quick scale the fixed ones above unless --settings.
[ "$scale" = full ] && [ -z "$settings" ] && [ -z "$tune" ] && settings=$repo/recipes/toy/results/tune.json
[ "$scale" = full ] && [ -z "$tf_settings" ] && tf_settings=$repo/recipes/toy/results/tune-table-free.json
if [ -n "$settings" ] && [ -z "$tune" ]; then
  selected=$("$python" -m fairseq_exporter.toy.tune settings "$settings") || exit 2
  eval "$selected"  # asr_updates= exporter_type= stage2_lr= stage2_updates= control_lr= control_updates= text_only_...
  log "settings from ${settings#"$repo/"}: $(echo $selected)"
fi
asr_updates=${asr_updates_asked:-${asr_updates:-}}
stage2_updates=${stage2_updates_asked:-${stage2_updates:-}}  # and stage 3's
control_updates=${stage2_updates_asked:-${control_updates:-}}
stage1_lr=3e-4; stage2_l2_weight=1; stage2_asr_weight=0.3
# Stage 2 (and 3): translation loss + L2 + transcript loss, MT frozen
stage2_flags=(--ast-weight 1 --l2-weight $stage2_l2_weight --asr-weight $stage2_asr_weight --lr ${stage2_lr:-})
# The control: stage 2's transcript loss alone; its checkpoint is selected on the dev BLEU of what
# it is tested as, the plain 1-best cascade (--coupling onebest)
control_flags=(--coupling onebest --ast-weight 0 --l2-weight 0 --asr-weight $stage2_asr_weight --lr ${control_lr:-})
# --data-buffer-size 0: fairseq-train stopping at --max-update mid-epoch leaves its batch-prefetch
# thread alive at interpreter exit, which can abort the finished process ("terminate called
# without an active exception", exit 134); with no buffer the batches are read in the main thread.
common=(--no-progress-bar --log-format json --log-interval 50 --seed "$seed" --num-workers 0
        --data-buffer-size 0 --no-epoch-checkpoints)

# A training step is done when its marker for the requested --max-update exists (step_done);
# otherwise fairseq-train resumes from the save dir's checkpoint_last.pt (so raising a max-update extends).
record_seconds() {  # name [done-before]: wall-clock seconds of the stage that just ended, for the
  # log and the report; a stage whose work was done before (done-before=1) keeps the time of the
  # run that did it
  local s=$(( $(date +%s) - stage_started ))
  if [ "${2:-}" != 1 ] || ! grep -q "^$1"$'\t' "$work/stage-seconds.tsv" 2>/dev/null; then
    printf '%s\t%d\n' "$1" $s >> "$work/stage-seconds.tsv"
  fi
  log "  ($1: $((s / 60)) min $((s % 60)) s)"
}
last_dev() {  # the last dev record of a training log, for the progress line
  grep '| dev |' "$work/logs/$1.log" | tail -n 1 | sed 's/.*| dev | //' | cut -c1-220 || true
}

train_asr() {  # N [name config extra-flags...]: the ASR of an N-update budget in WORK/NAME (default
  # asr-N; its lr decays to the end of N) on the data config CONFIG (default config_asr.yaml: the
  # MT's pieces); the study's ASR and the dev protocol's candidates are the same runs
  local n=$1 name=${2:-asr-$1} config=${3:-config_asr.yaml}; shift $(( $# < 3 ? $# : 3 ))
  local save=$work/$name
  step_done "$save" "$n" && return
  run "train-$name" fairseq_cli.train "$st" --task speech_to_text --config-yaml "$config" \
    --train-subset train_asr --valid-subset dev_asr --arch s2t_transformer "${asr_arch[@]}" \
    --share-decoder-input-output-embed --dropout 0.1 \
    --criterion label_smoothed_cross_entropy_with_ctc --ctc-weight 0.5 --label-smoothing 0.1 --report-accuracy \
    --optimizer adam --adam-betas '(0.9, 0.98)' --lr $asr_lr --lr-scheduler polynomial_decay \
    --warmup-updates $asr_warmup --total-num-update "$n" --end-learning-rate $asr_end_lr --curriculum 2 \
    --clip-norm 10 --max-tokens $max_tokens_asr --max-update "$n" \
    --save-dir "$save" "${common[@]}" --user-dir "$user_dir" "$@"
  mark_done "$save" "$n"
  log "  ASR ($n updates, $config): $(grep '| dev_asr |' "$work/logs/train-$name.log" | tail -n 1 | sed 's/.*| dev_asr | //' | cut -c1-160)"
}

use_asr() {  # N: WORK/asr -> asr-N, the ASR every later stage reads
  local n=$1 link
  if [ -d "$work/asr" ] && [ ! -L "$work/asr" ]; then  # a work dir from before asr-N: its marker says
    for done_marker in "$work"/asr/done-*; do
      [ -e "$done_marker" ] && [ "$done_marker" != "$work/asr/done-$n" ] && {
        log "$work/asr was trained to ${done_marker##*-} updates; for --asr-updates $n use a new --work" >&2; exit 2; }
    done
    step_done "$work/asr" "$n" && return
  fi
  link=$(readlink "$work/asr" || true)
  # later stages were built on the linked ASR: switching it would mix models in one work dir
  [ -z "$link" ] || [ "$link" = "asr-$n" ] || {
    log "$work/asr was trained to ${link#asr-} updates; for --asr-updates $n use a new --work" >&2; exit 2; }
  train_asr "$n"
  ln -sfn "asr-$n" "$work/asr"
}

exporter_train() {  # name save_dir text_model max_update exporter-source extra-flags...
  # text_model: an MT checkpoint file, an LM directory (stage 9) or an HF MT directory (stage 11);
  # the ASR is WORK/asr and the data config config_st.yaml unless $asr_dir and $st_config say otherwise
  local name=$1 save=$2 text=$3 updates=$4 source=$5; shift 5
  local text_model=(--mt-checkpoint "$text")
  # the LM's vocab exporter trains a copy of its table, as on the MT (the toy LM's table is
  # small; the low-rank default of --exporter-table-rank is for an LLM's)
  [ -d "$text" ] && text_model=(--lm-checkpoint "$text" --exporter-table-rank 0)
  [ -d "$text" ] && grep -q '"is_encoder_decoder": true' "$text/config.json" && text_model=(--hf-mt-checkpoint "$text")
  step_done "$save" "$updates" && { log "  $name: trained, skipped"; return; }
  # checkpoint_best: the best dev BLEU; a table-free exporter's stage 1 (best_metric=l2) the lowest dev L2
  local best_checkpoint=(--best-checkpoint-metric bleu --maximize-best-checkpoint-metric)
  [ "${best_metric:-bleu}" = l2 ] && best_checkpoint=(--best-checkpoint-metric l2)
  run "train-$name" fairseq_cli.train "$st" --user-dir "$user_dir" \
    --task speech_to_text_exporter --config-yaml "${st_config:-config_st.yaml}" \
    --train-subset train --valid-subset dev \
    --arch exporter --asr-checkpoint "${asr_dir:-$work/asr}/checkpoint_best.pt" "${text_model[@]}" \
    --exporter-source "$source" --exporter-type "$exporter_type" --exporter-hidden-dim 256 \
    --criterion exporter --label-smoothing 0.1 \
    --optimizer adam --adam-betas '(0.9, 0.98)' --lr-scheduler inverse_sqrt --warmup-updates 50 \
    --clip-norm 10 --max-tokens $max_tokens_st \
    --eval-bleu "${best_checkpoint[@]}" \
    --validate-interval-updates $valid_every --save-interval-updates $valid_every --keep-interval-updates 1 \
    --validate-interval 1000 --save-interval 1000 \
    --max-update "$updates" --save-dir "$save" "${common[@]}" --onebest-max-len $onebest_max_len "$@"
  mark_done "$save" "$updates"
  log "  $name: $(last_dev "train-$name")"
}

evaluate() {  # name checkpoint coupling [baseline-name] (the data config: as exporter_train's)
  local name=$1 ckpt=$2 coupling=$3 baseline=${4:-}
  local out=$work/gen/$name
  if [ ! -f "$out/generate-test.txt" ]; then
    run "generate-$name" fairseq_cli.generate "$st" --user-dir "$user_dir" \
      --task speech_to_text_exporter --config-yaml "${st_config:-config_st.yaml}" --gen-subset test \
      --path "$ckpt" --coupling "$coupling" --beam 5 --max-tokens $max_tokens_st --results-path "$out" \
      --onebest-max-len $onebest_max_len "${gen_len[@]}"
  fi
  if [ "$coupling" = exporter ] || [ "$coupling" = posterior ] && [ ! -f "$work/logs/validate-$name.log" ]; then
    run "validate-$name" fairseq_cli.validate "$st" --user-dir "$user_dir" \
      --task speech_to_text_exporter --config-yaml "${st_config:-config_st.yaml}" --valid-subset test \
      --path "$ckpt" --coupling "$coupling" --max-tokens $max_tokens_st --log-format json \
      --onebest-max-len $onebest_max_len
  fi
  score "$name" "$out/generate-test.txt" ${baseline:+"$work/gen/$baseline/generate-test.txt"}
}

make_corpus() {  # (it does nothing where the same corpus is already made)
  "$python" -m fairseq_exporter.toy.make_corpus --out "$data" --seed "$seed" --scale "$scale"
}

train_mt() {
  if [ ! -f "$work/mt-bin/dict.en.txt" ]; then
    run preprocess-mt fairseq_cli.preprocess --source-lang en --target-lang de \
      --trainpref "$data/text/general.train" --validpref "$data/text/general.valid" \
      --srcdict "$st/dict.en.txt" --tgtdict "$st/dict.de.txt" --destdir "$work/mt-bin" --workers 2
  fi
  if ! step_done "$work/mt" $mt_updates; then
    run train-mt fairseq_cli.train "$work/mt-bin" --task translation --arch transformer "${mt_arch[@]}" \
      --share-decoder-input-output-embed --dropout 0.1 \
      --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
      --optimizer adam --adam-betas '(0.9, 0.98)' --lr 3e-3 --lr-scheduler inverse_sqrt --warmup-updates 100 \
      --max-tokens $max_tokens_mt --max-update $mt_updates --save-dir "$work/mt" "${common[@]}" \
      --user-dir "$user_dir"
    mark_done "$work/mt" $mt_updates
    log "  MT: $(grep '| valid |' "$work/logs/train-mt.log" | tail -n 1 | sed 's/.*| valid | //' | cut -c1-160)"
  fi
}

text_only_text() {  # the task sentences stage 2 trains on (ST train), as text only: WORK/text-only-text/st.train.{en,de}
  [ -f "$work/text-only-text/st.train.de" ] && return
  local n_st l
  n_st=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["sizes"]["st_train"])' "$data/corpus.json")
  mkdir -p "$work/text-only-text"
  for l in en de; do head -n "$n_st" "$data/text/task.train.$l" > "$work/text-only-text/st.train.$l"; done
}

text_only_bin() {  # text_only_text, binarized for fairseq's translation task
  [ -f "$work/text-only-bin/dict.en.txt" ] && return
  text_only_text
  run preprocess-text-only fairseq_cli.preprocess --source-lang en --target-lang de \
    --trainpref "$work/text-only-text/st.train" --validpref "$data/text/task.valid" \
    --srcdict "$st/dict.en.txt" --tgtdict "$st/dict.de.txt" --destdir "$work/text-only-bin" --workers 2
}

train_text_only() {  # name save_dir lr max_update: the general MT with only its source table training
  local name=$1 save=$2 lr=$3 updates=$4
  text_only_bin
  step_done "$save" "$updates" && { log "  $name: trained, skipped"; return; }
  run "train-$name" fairseq_cli.train "$work/text-only-bin" --task translation --arch source_table_transformer \
    "${mt_arch[@]}" --share-decoder-input-output-embed --dropout 0.1 \
    --finetune-from-model "$work/mt/checkpoint_best.pt" \
    --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
    --optimizer adam --adam-betas '(0.9, 0.98)' --lr "$lr" --lr-scheduler inverse_sqrt --warmup-updates 50 \
    --max-tokens $max_tokens_mt --max-update "$updates" --save-dir "$save" "${common[@]}" \
    --validate-interval-updates $text_valid_every --save-interval-updates $text_valid_every --keep-interval-updates 1 \
    --validate-interval 1000 --save-interval 1000 --user-dir "$user_dir"
  mark_done "$save" "$updates"
}

# Stage 9's LM rows (and their ablations in stage 10): the ASR on the LM's pieces, the data config
# whose English side is those pieces, the LM prompted through its chat template with the message
# it was trained on (chat_lm.py's, in its training.json)
read_lm_message() {  # sets lm_message, or stops naming the LM that is not stage 9's instruct LM
  lm_message=$("$python" -c 'import json, sys
facts = json.load(open(sys.argv[1]))
if "message" not in facts:
    sys.exit(f"{sys.argv[1]}: not an LM of toy/chat_lm.py (no chat message): stage 9 needs its instruct LM; "
             "move the LM dir away or use a new --work")
print(facts["message"])' "$work/lm/training.json") || exit 2
}
lm_train() { asr_dir=$work/asr-lm st_config=config_st_lm.yaml exporter_train "$@" --lm-chat --lm-prompt "$lm_message"; }
lm_evaluate() { asr_dir=$work/asr-lm st_config=config_st_lm.yaml evaluate "$@"; }

if [ -n "$tune" ]; then
  # The dev protocol: the grid behind every setting the study reads from its settings file, each
  # chosen on the dev set (fairseq_exporter/toy/tune.py says how). Only fairseq-train runs here,
  # on the train and dev splits: no test split is read.
  tw=$work/tune; top=${grid_budgets[${#grid_budgets[@]}-1]}; text_top=${grid_text_budgets[${#grid_text_budgets[@]}-1]}
  tune_py=("$python" -m fairseq_exporter.toy.tune)
  log "Tune: the dev protocol on seed $seed (dev set only)"
  "${tune_py[@]}" grid "$tw/grid.json" --asr-updates "${grid_asr_updates[@]}" --exporters "${grid_exporters[@]}" \
    --lrs "${grid_lrs[@]}" --base-lr "$grid_base_lr" --budgets "${grid_budgets[@]}" --valid-every $valid_every \
    --text-lrs "${grid_text_lrs[@]}" --text-budgets "${grid_text_budgets[@]}" --text-valid-every $text_valid_every
  make_corpus
  train_mt
  for n in "${grid_asr_updates[@]}"; do
    stage_started=$(date +%s); made=0; step_done "$work/asr-$n" "$n" && made=1
    train_asr "$n"; record_seconds "tune-asr-$n" $made
  done
  use_asr "$("${tune_py[@]}" select asr --work "$work")"
  tune_stage2() {  # exporter lr: stage 2 run to the grid's largest budget
    exporter_type=$1 exporter_train "tune-stage2-$1-lr$2" "$tw/stage2-$1-lr$2" "$work/mt/checkpoint_best.pt" $top ctc \
      --finetune-from-model "$tw/stage1-$1/checkpoint_best.pt" --freeze-mt \
      --ast-weight 1 --l2-weight $stage2_l2_weight --asr-weight $stage2_asr_weight --lr "$2"
  }
  stage_started=$(date +%s)
  for t in "${grid_exporters[@]}"; do
    exporter_type=$t exporter_train "tune-stage1-$t" "$tw/stage1-$t" "$work/mt/checkpoint_best.pt" $stage1_updates ctc \
      --freeze-asr --freeze-mt --ast-weight 0 --l2-weight 1 --lr $stage1_lr
    tune_stage2 "$t" "$grid_base_lr"
  done
  record_seconds tune-exporter
  chosen=$("${tune_py[@]}" select exporter --work "$work")
  stage_started=$(date +%s)
  for lr in "${grid_lrs[@]}"; do tune_stage2 "$chosen" "$lr"; done
  record_seconds tune-stage2
  stage_started=$(date +%s)
  for lr in "${grid_lrs[@]}"; do
    exporter_type=$chosen exporter_train "tune-control-lr$lr" "$tw/control-lr$lr" "$work/mt/checkpoint_best.pt" $top ctc \
      --finetune-from-model "$tw/stage1-$chosen/checkpoint_best.pt" --freeze-mt \
      --coupling onebest --ast-weight 0 --l2-weight 0 --asr-weight $stage2_asr_weight --lr "$lr"
  done
  record_seconds tune-control
  stage_started=$(date +%s)
  for lr in "${grid_text_lrs[@]}"; do
    train_text_only "tune-text-only-lr$lr" "$tw/text-only-lr$lr" "$lr" "$text_top"
  done
  record_seconds tune-text-only
  "${tune_py[@]}" report --work "$work" --out "$results" > "$logs/tune-report.log" 2>&1 || {
    tail -n 20 "$logs/tune-report.log" >&2; exit 1; }
  log "wrote $results/tune.md and $results/tune.json ($(elapsed)); the study reads them with --settings $results/tune.json"
  exit 0
fi

if [ -n "$tune_table_free" ]; then
  # Stage 12's dev protocol (fairseq_exporter/toy/tune.py says how), on the ASR the main protocol
  # selected (--settings): a table-free exporter's stage 1 per type and lr, stage 2 at the base
  # lr and weight per type, the other lrs for the chosen type, then the other transcript-loss
  # weights at the chosen lr. Only fairseq-train runs here, on the train and dev splits.
  tw=$work/tune; top=${grid_budgets[${#grid_budgets[@]}-1]}; s1_top=${tf_stage1_budgets[${#tf_stage1_budgets[@]}-1]}
  tf_stage1_valid=(--validate-interval-updates $tf_stage1_valid_every --save-interval-updates $tf_stage1_valid_every)
  tune_py=("$python" -m fairseq_exporter.toy.tune)
  log "Tune: stage 12's dev protocol (a table-free exporter) on seed $seed (dev set only), ASR of $asr_updates updates"
  "${tune_py[@]}" grid-table-free "$tw/grid-table-free.json" --exporters "${tf_grid_exporters[@]}" \
    --stage1-lrs "${tf_stage1_lrs[@]}" --stage1-budgets "${tf_stage1_budgets[@]}" --stage1-valid-every $tf_stage1_valid_every \
    --lrs "${tf_grid_lrs[@]}" \
    --base-lr "$grid_base_lr" --budgets "${grid_budgets[@]}" --asr-weights "${tf_asr_weights[@]}" \
    --base-asr-weight "$tf_base_asr_weight" --valid-every $valid_every
  make_corpus
  train_mt
  use_asr "$asr_updates"
  tf_stage2() {  # exporter stage1-lr lr weight: stage 2 run to the grid's largest budget
    exporter_type=$1 exporter_train "tune-tf-stage2-$1-lr$3-w$4" "$tw/tf-stage2-$1-lr$3-w$4" "$work/mt/checkpoint_best.pt" \
      $top ctc --finetune-from-model "$tw/tf-stage1-$1-lr$2/checkpoint_best.pt" --freeze-mt \
      --ast-weight 1 --l2-weight $stage2_l2_weight --asr-weight "$4" --lr "$3"
  }
  stage_started=$(date +%s)
  for t in "${tf_grid_exporters[@]}"; do
    for lr in "${tf_stage1_lrs[@]}"; do
      best_metric=l2 exporter_type=$t exporter_train "tune-tf-stage1-$t-lr$lr" "$tw/tf-stage1-$t-lr$lr" \
        "$work/mt/checkpoint_best.pt" $s1_top ctc --freeze-asr --freeze-mt --ast-weight 0 --l2-weight 1 --lr "$lr" \
        "${tf_stage1_valid[@]}"
    done
  done
  record_seconds tune-tf-stage1
  stage_started=$(date +%s)
  declare -A s1_lr
  while read -r t lr; do s1_lr[$t]=$lr; done < <("${tune_py[@]}" select tf-stage1 --work "$work")
  for t in "${tf_grid_exporters[@]}"; do tf_stage2 "$t" "${s1_lr[$t]}" "$grid_base_lr" "$tf_base_asr_weight"; done
  chosen=$("${tune_py[@]}" select tf-exporter --work "$work")
  for lr in "${tf_grid_lrs[@]}"; do tf_stage2 "$chosen" "${s1_lr[$chosen]}" "$lr" "$tf_base_asr_weight"; done
  chosen_lr=$("${tune_py[@]}" select tf-lr --work "$work")
  for w in "${tf_asr_weights[@]}"; do tf_stage2 "$chosen" "${s1_lr[$chosen]}" "$chosen_lr" "$w"; done
  record_seconds tune-tf-stage2
  "${tune_py[@]}" report-table-free --work "$work" --out "$results" > "$logs/tune-table-free-report.log" 2>&1 || {
    tail -n 20 "$logs/tune-table-free-report.log" >&2; exit 1; }
  log "wrote $results/tune-table-free.md and .json ($(elapsed)); stage 12 reads them with --table-free-settings $results/tune-table-free.json"
  exit 0
fi

add_rows() {  # what: the report again, with the rows the stage added
  "$python" -m fairseq_exporter.toy.report --work "$work" --out "$results" --commands "$commands" \
    > "$work/logs/report.log" 2>&1 || { tail -n 20 "$work/logs/report.log" >&2; exit 1; }
  log "added $1 to $results/results.md ($(elapsed) in all)"
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  stage_started=$(date +%s)
  log "Stage 0: corpus (grammar text + espeak-ng speech, fbank, sentencepiece, manifests)"
  made=0; [ -f "$data/corpus.json" ] && made=1  # (make_corpus stops if it was made otherwise)
  make_corpus
  record_seconds corpus $made
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  stage_started=$(date +%s)
  log "Stage 1: general-domain MT (fairseq-preprocess + fairseq-train transformer)"
  made=0; step_done "$work/mt" $mt_updates && made=1
  train_mt
  record_seconds mt $made
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  stage_started=$(date +%s)
  log "Stage 2: ASR on the task speech, targets in the MT source vocabulary (s2t_transformer)"
  made=0; step_done "$work/asr-$asr_updates" "$asr_updates" && made=1
  use_asr "$asr_updates"
  record_seconds asr $made
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  stage_started=$(date +%s)
  log "Stage 3: paper stage 1, the exporter alone (ASR and MT frozen, L2 only)"
  exporter_train stage1 "$work/stage1" "$work/mt/checkpoint_best.pt" $stage1_updates ctc \
    --freeze-asr --freeze-mt --ast-weight 0 --l2-weight 1 --lr $stage1_lr
  record_seconds stage1
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  stage_started=$(date +%s)
  log "Stage 4: baselines (1-best cascade, MT on the reference transcript) and stage 1 on the test set"
  evaluate onebest "$work/stage1/checkpoint_best.pt" onebest
  evaluate reference "$work/stage1/checkpoint_best.pt" reference onebest
  evaluate stage1 "$work/stage1/checkpoint_best.pt" exporter onebest
  record_seconds baselines
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  stage_started=$(date +%s)
  log "Stage 5: paper stage 2, ASR + exporter fine-tuned with the MT frozen"
  exporter_train stage2 "$work/stage2" "$work/mt/checkpoint_best.pt" $stage2_updates ctc \
    --finetune-from-model "$work/stage1/checkpoint_best.pt" \
    --freeze-mt "${stage2_flags[@]}"
  evaluate stage2 "$work/stage2/checkpoint_best.pt" exporter onebest
  # Control: stage 2 also trains the ASR (transcript loss, --asr-weight); the same updates with the
  # transcript loss alone, then the plain 1-best cascade, show what that part is worth.
  exporter_train control "$work/control" "$work/mt/checkpoint_best.pt" $control_updates ctc \
    --finetune-from-model "$work/stage1/checkpoint_best.pt" --freeze-mt "${control_flags[@]}"
  evaluate control "$work/control/checkpoint_best.pt" onebest onebest
  score stage2-vs-control "$work/gen/stage2/generate-test.txt" "$work/gen/control/generate-test.txt" \
    "$work/gen/stage2/vs-control.json"
  record_seconds stage2
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  stage_started=$(date +%s)
  log "Stage 6: paper stage 3, the MT incrementally trained on the task parallel text"
  if [ ! -f "$work/mt-task-bin/dict.en.txt" ]; then
    run preprocess-mt-task fairseq_cli.preprocess --source-lang en --target-lang de \
      --trainpref "$data/text/task.train" --validpref "$data/text/task.valid" \
      --srcdict "$st/dict.en.txt" --tgtdict "$st/dict.de.txt" --destdir "$work/mt-task-bin" --workers 2
  fi
  if ! step_done "$work/mt-adapted" $mt_adapt_updates; then
    run train-mt-adapted fairseq_cli.train "$work/mt-task-bin" --task translation --arch transformer "${mt_arch[@]}" \
      --share-decoder-input-output-embed --dropout 0.1 \
      --finetune-from-model "$work/mt/checkpoint_best.pt" \
      --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
      --optimizer adam --adam-betas '(0.9, 0.98)' --lr 5e-4 --lr-scheduler inverse_sqrt --warmup-updates 50 \
      --max-tokens $max_tokens_mt --max-update $mt_adapt_updates --save-dir "$work/mt-adapted" "${common[@]}" \
      --user-dir "$user_dir"
    mark_done "$work/mt-adapted" $mt_adapt_updates
  fi
  exporter_train stage3-exporter "$work/stage3-exporter" "$work/mt-adapted/checkpoint_best.pt" $stage1_updates ctc \
    --freeze-asr --freeze-mt --ast-weight 0 --l2-weight 1 --lr $stage1_lr
  evaluate adapted-onebest "$work/stage3-exporter/checkpoint_best.pt" onebest
  exporter_train stage3 "$work/stage3" "$work/mt-adapted/checkpoint_best.pt" $stage2_updates ctc \
    --finetune-from-model "$work/stage3-exporter/checkpoint_best.pt" \
    --freeze-mt "${stage2_flags[@]}"
  evaluate stage3 "$work/stage3/checkpoint_best.pt" exporter adapted-onebest
  record_seconds stage3
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  stage_started=$(date +%s)
  log "Stage 7: results table and plot (the paper's study: $(elapsed))"
  "$python" -m fairseq_exporter.toy.report --work "$work" --out "$results" --commands "$commands"
  log "wrote $results/results.md and $results/curves.png"
  # make demo's published run (seed 1, the committed settings), where this run is one
  published=$repo/recipes/toy/results/demo/results.json
  if [ "$scale" = full ] && [ "$seed" = 1 ] && [ -f "$published" ] && [ -z "$asr_updates_asked$stage2_updates_asked" ] \
     && [ "$settings" = "$repo/recipes/toy/results/tune.json" ]; then
    if "${provenance[@]}" compare "$results/results.json" "$published" \
         > "$logs/compare-published.log" 2>&1; then
      log "the same bits as the published make demo run (recipes/toy/results/demo)"
    else
      log "not the published make demo run's bits: $(head -n 1 "$logs/compare-published.log") (stage by stage, and the machine facts that differ: $logs/compare-published.log)"
    fi
  fi
  record_seconds report
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  stage_started=$(date +%s)
  log "Stage 8: beyond the paper's table: the exporter on the attention decoder, posterior coupling"
  # The same stages 1-2 with the 1-best from the ASR's attention decoder and the exporter reading
  # the decoder state that predicted each token; compared with the decoder 1-best cascade.
  exporter_train stage1-decoder "$work/stage1-decoder" "$work/mt/checkpoint_best.pt" $stage1_updates decoder \
    --freeze-asr --freeze-mt --ast-weight 0 --l2-weight 1 --lr $stage1_lr
  evaluate onebest-decoder "$work/stage1-decoder/checkpoint_best.pt" onebest
  exporter_train stage2-decoder "$work/stage2-decoder" "$work/mt/checkpoint_best.pt" $stage2_updates decoder \
    --finetune-from-model "$work/stage1-decoder/checkpoint_best.pt" \
    --freeze-mt "${stage2_flags[@]}"
  evaluate stage2-decoder "$work/stage2-decoder/checkpoint_best.pt" exporter onebest-decoder
  # Tight coupling (Bahar et al. 2021): the ASR decoder's posterior times the MT table, no exporter.
  exporter_train posterior "$work/posterior" "$work/mt/checkpoint_best.pt" $stage2_updates decoder \
    --coupling posterior --freeze-mt --ast-weight 1 --l2-weight 0 --asr-weight $stage2_asr_weight --lr $stage2_lr
  evaluate posterior "$work/posterior/checkpoint_best.pt" posterior onebest-decoder
  add_rows "the rows"
  record_seconds extras
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  stage_started=$(date +%s)
  log "Stage 9: a frozen instruct LM as the text model, prompted through its chat template (stages 1-2 and the control again)"
  # A small Llama-architecture instruct LM trained on the general-domain text as chat turns, with a
  # byte-level BPE tokenizer (Llama 3's split and specials) and Llama 3 Instruct's chat template,
  # saved as a Hugging Face directory, then frozen (--lm-checkpoint --lm-chat). Its pieces are not
  # the MT's: an ASR of the same budget writes them (fairseq-exporter-lm-vocab's dictionary),
  # starting from stage 2's ASR's speech encoder (fairseq-exporter-asr-encoder), as fairseq's
  # MuST-C ST recipe starts from its ASR's: from scratch, its CTC can stall on these pieces.
  if ! step_done "$work/lm" $lm_updates; then
    run train-lm fairseq_exporter.toy.chat_lm --data "$data" --out "$work/lm" --updates $lm_updates \
      --seed "$seed" "${lm_arch[@]}"
    mark_done "$work/lm" $lm_updates
    log "  LM: $(grep '"valid_nll"' "$work/logs/train-lm.log" | tail -n 1 | cut -c1-120)"
  fi
  read_lm_message
  run lm-configs fairseq_exporter.toy.make_corpus --out "$data" --lm-configs "$work/lm"
  use_asr "$asr_updates"  # (stage 2's ASR; trained here if stage 2 was not run)
  [ -f "$work/asr-lm-encoder.pt" ] || run asr-lm-encoder fairseq_exporter.cli.asr_encoder "$work/asr/checkpoint_best.pt" \
    --dict "$st/dict.lm.txt" --out "$work/asr-lm-encoder.pt" --seed "$seed"
  train_asr "$asr_updates" asr-lm config_asr_lm.yaml --load-pretrained-encoder-from "$work/asr-lm-encoder.pt"
  lm_train stage1-lm "$work/stage1-lm" "$work/lm" $stage1_updates ctc \
    --freeze-asr --ast-weight 0 --l2-weight 1 --lr $stage1_lr
  lm_evaluate onebest-lm "$work/stage1-lm/checkpoint_best.pt" onebest
  lm_evaluate stage1-lm "$work/stage1-lm/checkpoint_best.pt" exporter onebest-lm
  lm_train stage2-lm "$work/stage2-lm" "$work/lm" $stage2_updates ctc \
    --finetune-from-model "$work/stage1-lm/checkpoint_best.pt" "${stage2_flags[@]}"
  lm_evaluate stage2-lm "$work/stage2-lm/checkpoint_best.pt" exporter onebest-lm
  lm_train control-lm "$work/control-lm" "$work/lm" $control_updates ctc \
    --finetune-from-model "$work/stage1-lm/checkpoint_best.pt" "${control_flags[@]}"
  lm_evaluate control-lm "$work/control-lm/checkpoint_best.pt" onebest onebest-lm
  score stage2-lm-vs-control "$work/gen/stage2-lm/generate-test.txt" "$work/gen/control-lm/generate-test.txt" \
    "$work/gen/stage2-lm/vs-control.json"
  add_rows "the LM rows"
  record_seconds lm
fi

if [ $stage -le 10 ] && [ $stop_stage -ge 10 ]; then
  stage_started=$(date +%s)
  log "Stage 10: ablations (stage 2 with the ASR frozen; the text model's input table adapted on text alone)"
  [ -d "$work/stage2" ] || [ -d "$work/stage2-lm" ] || {
    log "stage 10 ablates stage 2 (stage 5) or the LM's stage 2 (stage 9): neither is in $work; run one first" >&2; exit 2; }
  if [ -d "$work/stage2" ]; then
    # Exporter only: stage 2's losses and settings with the ASR frozen (the 1-best stays stage 1's):
    # does updating the ASR matter?
    exporter_train exporter-only "$work/exporter-only" "$work/mt/checkpoint_best.pt" $stage2_updates ctc \
      --finetune-from-model "$work/stage1/checkpoint_best.pt" --freeze-asr --freeze-mt \
      --ast-weight 1 --l2-weight $stage2_l2_weight --asr-weight 0 --lr $stage2_lr
    evaluate exporter-only "$work/exporter-only/checkpoint_best.pt" exporter onebest
    score stage2-vs-exporter-only "$work/gen/stage2/generate-test.txt" "$work/gen/exporter-only/generate-test.txt" \
      "$work/gen/stage2/vs-exporter-only.json"
    # Text-only adaptation: the general MT's source embedding table alone (the rest frozen) trained on
    # the task sentences stage 2 trains on, as text (reference transcript -> translation, no speech);
    # then the plain 1-best cascade of stage 1's ASR: is the gain reachable without coupling speech?
    train_text_only mt-text-only "$work/mt-text-only" $text_only_lr $text_only_updates
    exporter_train text-only-exporter "$work/text-only-exporter" "$work/mt-text-only/checkpoint_best.pt" \
      $stage1_updates ctc --freeze-asr --freeze-mt --ast-weight 0 --l2-weight 1 --lr $stage1_lr
    evaluate text-only "$work/text-only-exporter/checkpoint_best.pt" onebest onebest
    score stage2-vs-text-only "$work/gen/stage2/generate-test.txt" "$work/gen/text-only/generate-test.txt" \
      "$work/gen/stage2/vs-text-only.json"
  else
    log "  no stage 2 (stage 5) in $work: the MT's ablations are not run"
  fi
  if [ -d "$work/stage2-lm" ]; then
    # The same two on the LM (stage 9), with the MT's settings: its stage 2 with the ASR frozen;
    # the LM's input embedding table alone (untied from its output layer) trained on the same
    # task sentences as chat turns (chat_lm.py --adapt-input-table), then its 1-best cascade
    read_lm_message
    lm_train exporter-only-lm "$work/exporter-only-lm" "$work/lm" $stage2_updates ctc \
      --finetune-from-model "$work/stage1-lm/checkpoint_best.pt" --freeze-asr \
      --ast-weight 1 --l2-weight $stage2_l2_weight --asr-weight 0 --lr $stage2_lr
    lm_evaluate exporter-only-lm "$work/exporter-only-lm/checkpoint_best.pt" exporter onebest-lm
    score stage2-lm-vs-exporter-only "$work/gen/stage2-lm/generate-test.txt" \
      "$work/gen/exporter-only-lm/generate-test.txt" "$work/gen/stage2-lm/vs-exporter-only.json"
    text_only_text
    if ! step_done "$work/lm-text-only" $text_only_updates; then
      run train-lm-text-only fairseq_exporter.toy.chat_lm --adapt-input-table "$work/lm" \
        --train-pairs "$work/text-only-text/st.train" --valid-pairs "$data/text/task.valid" \
        --out "$work/lm-text-only" --updates $text_only_updates --lr $text_only_lr --warmup 50 --seed "$seed"
      mark_done "$work/lm-text-only" $text_only_updates
    fi
    lm_train text-only-exporter-lm "$work/text-only-exporter-lm" "$work/lm-text-only" $stage1_updates ctc \
      --freeze-asr --ast-weight 0 --l2-weight 1 --lr $stage1_lr
    lm_evaluate text-only-lm "$work/text-only-exporter-lm/checkpoint_best.pt" onebest onebest-lm
    score stage2-lm-vs-text-only "$work/gen/stage2-lm/generate-test.txt" "$work/gen/text-only-lm/generate-test.txt" \
      "$work/gen/stage2-lm/vs-text-only.json"
  else
    log "  no LM stage 2 (stage 9) in $work: the LM's ablations are not run"
  fi
  add_rows "the ablation rows"
  record_seconds ablations
fi

if [ $stage -le 11 ] && [ $stop_stage -ge 11 ]; then
  stage_started=$(date +%s)
  log "Stage 11: a frozen Hugging Face encoder-decoder MT as the text model (stages 1-2 and the control again)"
  # A small Marian-architecture MT trained on the general-domain text (the fairseq MT's data, size
  # and budget) with a MarianTokenizer whose source model is the ASR's, saved as a Hugging Face
  # directory, then frozen (--hf-mt-checkpoint): the MT a researcher downloads, in miniature.
  if ! step_done "$work/hf-mt" $hf_mt_updates; then
    run train-hf-mt fairseq_exporter.toy.hf_mt --data "$data" --out "$work/hf-mt" --updates $hf_mt_updates \
      --seed "$seed" "${hf_mt_arch[@]}"
    mark_done "$work/hf-mt" $hf_mt_updates
    log "  HF MT: $(grep '"valid_nll"' "$work/logs/train-hf-mt.log" | tail -n 1 | cut -c1-120)"
  fi
  exporter_train stage1-hf-mt "$work/stage1-hf-mt" "$work/hf-mt" $stage1_updates ctc \
    --freeze-asr --ast-weight 0 --l2-weight 1 --lr $stage1_lr
  evaluate onebest-hf-mt "$work/stage1-hf-mt/checkpoint_best.pt" onebest
  evaluate stage1-hf-mt "$work/stage1-hf-mt/checkpoint_best.pt" exporter onebest-hf-mt
  exporter_train stage2-hf-mt "$work/stage2-hf-mt" "$work/hf-mt" $stage2_updates ctc \
    --finetune-from-model "$work/stage1-hf-mt/checkpoint_best.pt" "${stage2_flags[@]}"
  evaluate stage2-hf-mt "$work/stage2-hf-mt/checkpoint_best.pt" exporter onebest-hf-mt
  exporter_train control-hf-mt "$work/control-hf-mt" "$work/hf-mt" $control_updates ctc \
    --finetune-from-model "$work/stage1-hf-mt/checkpoint_best.pt" "${control_flags[@]}"
  evaluate control-hf-mt "$work/control-hf-mt/checkpoint_best.pt" onebest onebest-hf-mt
  score stage2-hf-mt-vs-control "$work/gen/stage2-hf-mt/generate-test.txt" "$work/gen/control-hf-mt/generate-test.txt" \
    "$work/gen/stage2-hf-mt/vs-control.json"
  add_rows "the HF MT rows"
  record_seconds hf-mt
fi
if [ $stage -le 12 ] && [ $stop_stage -ge 12 ]; then
  stage_started=$(date +%s)
  if [ -n "$tf_settings" ]; then
    selected=$("$python" -m fairseq_exporter.toy.tune settings --table-free "$tf_settings") || exit 2
    eval "$selected"  # tf_exporter_type= tf_stage1_lr= tf_stage1_updates= tf_stage2_lr= tf_stage2_updates= tf_asr_weight=
    log "stage 12's settings from ${tf_settings#"$repo/"}: $(echo $selected)"
  fi
  log "Stage 12: the paper's table-free exporter ($tf_exporter_type): stages 1-2 and stage 2 with the ASR frozen"
  # The exporter is a network over the ASR's states with no table of its own: any gain stage 2 has
  # over its exporter-only ablation (the ASR frozen) comes through the ASR. Against stage 5's 1-best
  # cascade and control (they do not use the exporter).
  for needed in onebest control; do
    [ -f "$work/gen/$needed/generate-test.txt" ] || {
      log "stage 12 compares with stage 4's 1-best cascade and stage 5's control: no $work/gen/$needed; run stages 0-5 first" >&2; exit 2; }
  done
  tf_flags=(--ast-weight 1 --l2-weight $stage2_l2_weight --lr $tf_stage2_lr)
  best_metric=l2 exporter_type=$tf_exporter_type exporter_train stage1-tf "$work/stage1-tf" "$work/mt/checkpoint_best.pt" \
    $tf_stage1_updates ctc --freeze-asr --freeze-mt --ast-weight 0 --l2-weight 1 --lr $tf_stage1_lr \
    --validate-interval-updates $tf_stage1_valid_every --save-interval-updates $tf_stage1_valid_every
  evaluate stage1-tf "$work/stage1-tf/checkpoint_best.pt" exporter onebest
  exporter_type=$tf_exporter_type exporter_train stage2-tf "$work/stage2-tf" "$work/mt/checkpoint_best.pt" $tf_stage2_updates ctc \
    --finetune-from-model "$work/stage1-tf/checkpoint_best.pt" --freeze-mt "${tf_flags[@]}" --asr-weight $tf_asr_weight
  evaluate stage2-tf "$work/stage2-tf/checkpoint_best.pt" exporter onebest
  score stage2-tf-vs-control "$work/gen/stage2-tf/generate-test.txt" "$work/gen/control/generate-test.txt" \
    "$work/gen/stage2-tf/vs-control.json"
  exporter_type=$tf_exporter_type exporter_train exporter-only-tf "$work/exporter-only-tf" "$work/mt/checkpoint_best.pt" \
    $tf_stage2_updates ctc --finetune-from-model "$work/stage1-tf/checkpoint_best.pt" --freeze-asr --freeze-mt \
    "${tf_flags[@]}" --asr-weight 0
  evaluate exporter-only-tf "$work/exporter-only-tf/checkpoint_best.pt" exporter onebest
  score stage2-tf-vs-exporter-only "$work/gen/stage2-tf/generate-test.txt" "$work/gen/exporter-only-tf/generate-test.txt" \
    "$work/gen/stage2-tf/vs-exporter-only.json"
  add_rows "the table-free exporter's rows"
  record_seconds table-free
fi
exit 0
}
