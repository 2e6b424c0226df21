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
#   bash recipes/toy/run.sh --stage 9 --stop-stage 9    # a frozen decoder-only LM as the text model
#   bash recipes/toy/run.sh --scale quick --stop-stage 8   # a tiny version (the test suite runs it)
#   bash recipes/toy/run.sh --stage 5           # rerun from a stage; done steps are skipped
#   bash recipes/toy/run.sh --asr-updates 1600 --work work/toy-1600 --results results/toy-1600
#                                               # a shorter-trained ASR (a new --work: its lr decays
#                                               # to the end of the budget)
# Options: --stage N, --stop-stage N (0-9), --scale full|quick, --seed N | --seeds N,N[,...],
# --work DIR, --results DIR, --asr-updates N, --stage2-updates N (stage 2, its control and
# stage 3). Stages are listed in the README ("Stages of run.sh").
set -euo pipefail

stage=0
stop_stage=7        # stages 8 and 9 (extra rows beyond the paper's table) only when asked
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
    *) echo "unknown option $1 (see bash $0 --help)" >&2; exit 2 ;;
  esac
done
for opt in stage stop_stage; do
  [[ "${!opt}" =~ ^[0-9]$ ]] || { echo "--${opt/_/-} must be a stage number 0-9, not '${!opt}'" >&2; exit 2; }
done
[ "$stage" -le "$stop_stage" ] || {
  echo "--stage $stage is after --stop-stage $stop_stage: nothing to run (stages 8 and 9 run only with --stop-stage 8 or 9)" >&2; exit 2; }
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

# Sizes. full: the study; quick: every stage, tiny models (minutes: ~45 fairseq start-ups).
if [ "$scale" = full ]; then
  mt_arch=(--encoder-layers 2 --decoder-layers 2 --encoder-embed-dim 128 --decoder-embed-dim 128
           --encoder-ffn-embed-dim 512 --decoder-ffn-embed-dim 512 --encoder-attention-heads 4 --decoder-attention-heads 4)
  mt_updates=300; mt_adapt_updates=100
  asr_arch=(--encoder-layers 4 --decoder-layers 2 --encoder-embed-dim 144 --decoder-embed-dim 144
            --encoder-ffn-embed-dim 576 --decoder-ffn-embed-dim 576 --encoder-attention-heads 4
            --decoder-attention-heads 4 --conv-channels 256)
  # The ASR is what the 20-minute budget buys least of; small batches make the most of it
  # (calibration in the README).
  # 4800 updates: an ASR trained far enough that the same updates without the coupling (the
  # control) no longer explain stage 2's gain (chosen on dev; recipe README)
  asr_updates=4800; asr_warmup=150; max_tokens_asr=4000; asr_lr=3e-3; asr_end_lr=1e-5
  # Stage 2 (and its control, and stage 3) need a few hundred updates: the translation loss first
  # disturbs the 1-best, and the exporter needs time to move (tuned on dev; README).
  stage1_updates=50; stage2_updates=400; valid_every=100
  max_tokens_mt=4096; max_tokens_st=10000
  onebest_max_len=40; gen_len=()
  lm_updates=800; lm_arch=(--layers 3 --dim 128)  # stage 9's decoder-only LM
else
  mt_arch=(--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 --decoder-embed-dim 32
           --encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --encoder-attention-heads 2 --decoder-attention-heads 2)
  mt_updates=20; mt_adapt_updates=5
  asr_arch=(--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 --decoder-embed-dim 32
            --encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --encoder-attention-heads 2
            --decoder-attention-heads 2 --conv-channels 32)
  asr_updates=20; asr_warmup=10; max_tokens_asr=20000; asr_lr=2e-3; asr_end_lr=1e-5
  stage1_updates=4; stage2_updates=4; valid_every=2
  max_tokens_mt=4096; max_tokens_st=20000
  onebest_max_len=12; gen_len=(--max-len-b 12)  # barely trained models babble: cap their output
  lm_updates=10; lm_arch=(--layers 1 --dim 32)
fi
asr_updates=${asr_updates_asked:-$asr_updates}
stage2_updates=${stage2_updates_asked:-$stage2_updates}  # also the control's and stage 3's
stage1_lr=3e-4; stage2_lr=2e-4; stage2_l2_weight=1; stage2_asr_weight=0.3
# Stage 2 (and 3): translation loss + L2 + transcript loss, MT frozen
stage2_flags=(--ast-weight 1 --l2-weight $stage2_l2_weight --asr-weight $stage2_asr_weight --lr $stage2_lr)
# --data-buffer-size 0: fairseq-train stopping at --max-update mid-epoch leaves its batch-prefetch
# thread alive at interpreter exit, which can abort the finished process ("terminate called
# without an active exception", exit 134); with no buffer the batches are read in the main thread.
common=(--no-progress-bar --log-format json --log-interval 50 --seed "$seed" --num-workers 0
        --data-buffer-size 0 --no-epoch-checkpoints)

# A training step is done when its marker for the requested --max-update exists (step_done);
# otherwise fairseq-train resumes from the save dir's checkpoint_last.pt (so raising a max-update extends).
record_seconds() {  # wall-clock seconds of the stage that just ended, for the log and the report
  local s=$(( $(date +%s) - stage_started ))
  printf '%s\t%d\n' "$1" $s >> "$work/stage-seconds.tsv"
  log "  ($1: $((s / 60)) min $((s % 60)) s)"
}
last_dev() {  # the last dev record of a training log, for the progress line
  grep '| dev |' "$work/logs/$1.log" | tail -n 1 | sed 's/.*| dev | //' | cut -c1-220 || true
}

exporter_train() {  # name save_dir text_model max_update exporter-source extra-flags...
  # text_model: an MT checkpoint file, or an LM directory (stage 9)
  local name=$1 save=$2 text=$3 updates=$4 source=$5; shift 5
  local text_model=(--mt-checkpoint "$text")
  [ -d "$text" ] && text_model=(--lm-checkpoint "$text")
  step_done "$save" "$updates" && { log "  $name: trained, skipped"; return; }
  run "train-$name" fairseq_cli.train "$st" --user-dir "$user_dir" \
    --task speech_to_text_exporter --config-yaml config_st.yaml \
    --train-subset train --valid-subset dev \
    --arch exporter --asr-checkpoint "$work/asr/checkpoint_best.pt" "${text_model[@]}" \
    --exporter-source "$source" --exporter-type vocab --exporter-hidden-dim 256 \
    --criterion exporter --label-smoothing 0.1 \
    --optimizer adam --adam-betas '(0.9, 0.98)' --lr-scheduler inverse_sqrt --warmup-updates 50 \
    --clip-norm 10 --max-tokens $max_tokens_st \
    --eval-bleu --best-checkpoint-metric bleu --maximize-best-checkpoint-metric \
    --validate-interval-updates $valid_every --save-interval-updates $valid_every --keep-interval-updates 1 \
    --validate-interval 1000 --save-interval 1000 \
    --max-update "$updates" --save-dir "$save" "${common[@]}" --onebest-max-len $onebest_max_len "$@"
  mark_done "$save" "$updates"
  log "  $name: $(last_dev "train-$name")"
}

evaluate() {  # name checkpoint coupling [baseline-name]
  local name=$1 ckpt=$2 coupling=$3 baseline=${4:-}
  local out=$work/gen/$name
  if [ ! -f "$out/generate-test.txt" ]; then
    run "generate-$name" fairseq_cli.generate "$st" --user-dir "$user_dir" \
      --task speech_to_text_exporter --config-yaml config_st.yaml --gen-subset test \
      --path "$ckpt" --coupling "$coupling" --beam 5 --max-tokens $max_tokens_st --results-path "$out" \
      --onebest-max-len $onebest_max_len "${gen_len[@]}"
  fi
  if [ "$coupling" = exporter ] || [ "$coupling" = posterior ] && [ ! -f "$work/logs/validate-$name.log" ]; then
    run "validate-$name" fairseq_cli.validate "$st" --user-dir "$user_dir" \
      --task speech_to_text_exporter --config-yaml config_st.yaml --valid-subset test \
      --path "$ckpt" --coupling "$coupling" --max-tokens $max_tokens_st --log-format json \
      --onebest-max-len $onebest_max_len
  fi
  score "$name" "$out/generate-test.txt" ${baseline:+"$work/gen/$baseline/generate-test.txt"}
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  stage_started=$(date +%s)
  log "Stage 0: corpus (grammar text + espeak-ng speech, fbank, sentencepiece, manifests)"
  "$python" -m fairseq_exporter.toy.make_corpus --out "$data" --seed "$seed" --scale "$scale"
  record_seconds corpus
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  stage_started=$(date +%s)
  log "Stage 1: general-domain MT (fairseq-preprocess + fairseq-train transformer)"
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
  record_seconds mt
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  stage_started=$(date +%s)
  log "Stage 2: ASR on the task speech, targets in the MT source vocabulary (s2t_transformer)"
  for done_marker in "$work"/asr/done-*; do  # the lr decays to the end of the budget: no extending
    [ -e "$done_marker" ] && [ "$done_marker" != "$work/asr/done-$asr_updates" ] && {
      log "$work/asr was trained to ${done_marker##*-} updates; for --asr-updates $asr_updates use a new --work" >&2; exit 2; }
  done
  if ! step_done "$work/asr" $asr_updates; then
    run train-asr fairseq_cli.train "$st" --task speech_to_text --config-yaml config_asr.yaml \
      --train-subset train_asr --valid-subset dev_asr --arch s2t_transformer "${asr_arch[@]}" \
      --share-decoder-input-output-embed --dropout 0.1 \
      --criterion label_smoothed_cross_entropy_with_ctc --ctc-weight 0.5 --label-smoothing 0.1 --report-accuracy \
      --optimizer adam --adam-betas '(0.9, 0.98)' --lr $asr_lr --lr-scheduler polynomial_decay \
      --warmup-updates $asr_warmup --total-num-update $asr_updates --end-learning-rate $asr_end_lr --curriculum 2 \
      --clip-norm 10 --max-tokens $max_tokens_asr --max-update $asr_updates \
      --save-dir "$work/asr" "${common[@]}" --user-dir "$user_dir"
    mark_done "$work/asr" $asr_updates
    log "  ASR: $(grep '| dev_asr |' "$work/logs/train-asr.log" | tail -n 1 | sed 's/.*| dev_asr | //' | cut -c1-160)"
  fi
  record_seconds asr
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
  exporter_train control "$work/control" "$work/mt/checkpoint_best.pt" $stage2_updates ctc \
    --finetune-from-model "$work/stage1/checkpoint_best.pt" \
    --freeze-mt --ast-weight 0 --l2-weight 0 --asr-weight $stage2_asr_weight --lr $stage2_lr
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
  "$python" -m fairseq_exporter.toy.report --work "$work" --out "$results" --commands "$commands" \
    > "$work/logs/report.log" 2>&1 || { tail -n 20 "$work/logs/report.log" >&2; exit 1; }
  log "added the rows to $results/results.md ($(elapsed) in all)"
  record_seconds extras
fi

if [ $stage -le 9 ] && [ $stop_stage -ge 9 ]; then
  stage_started=$(date +%s)
  log "Stage 9: a frozen decoder-only LM as the text model (stages 1-2 and the control again)"
  # A small Llama-architecture LM trained on the general-domain text as a prompted translator
  # (its tokenizer holds the toy's pieces), saved as a Hugging Face directory, then frozen.
  if ! step_done "$work/lm" $lm_updates; then
    run train-lm fairseq_exporter.toy.causal_lm --data "$data" --out "$work/lm" --updates $lm_updates \
      --seed "$seed" "${lm_arch[@]}"
    mark_done "$work/lm" $lm_updates
    log "  LM: $(grep '"valid_nll"' "$work/logs/train-lm.log" | tail -n 1 | cut -c1-120)"
  fi
  exporter_train stage1-lm "$work/stage1-lm" "$work/lm" $stage1_updates ctc \
    --freeze-asr --ast-weight 0 --l2-weight 1 --lr $stage1_lr
  evaluate onebest-lm "$work/stage1-lm/checkpoint_best.pt" onebest
  evaluate stage1-lm "$work/stage1-lm/checkpoint_best.pt" exporter onebest-lm
  exporter_train stage2-lm "$work/stage2-lm" "$work/lm" $stage2_updates ctc \
    --finetune-from-model "$work/stage1-lm/checkpoint_best.pt" "${stage2_flags[@]}"
  evaluate stage2-lm "$work/stage2-lm/checkpoint_best.pt" exporter onebest-lm
  exporter_train control-lm "$work/control-lm" "$work/lm" $stage2_updates ctc \
    --finetune-from-model "$work/stage1-lm/checkpoint_best.pt" \
    --ast-weight 0 --l2-weight 0 --asr-weight $stage2_asr_weight --lr $stage2_lr
  evaluate control-lm "$work/control-lm/checkpoint_best.pt" onebest onebest-lm
  score stage2-lm-vs-control "$work/gen/stage2-lm/generate-test.txt" "$work/gen/control-lm/generate-test.txt" \
    "$work/gen/stage2-lm/vs-control.json"
  "$python" -m fairseq_exporter.toy.report --work "$work" --out "$results" --commands "$commands" \
    > "$work/logs/report.log" 2>&1 || { tail -n 20 "$work/logs/report.log" >&2; exit 1; }
  log "added the LM rows to $results/results.md ($(elapsed) in all)"
  record_seconds lm
fi

