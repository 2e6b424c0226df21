#!/usr/bin/env bash
# MuST-C En-De: the exporter study (Chelba & Schalkwyk 2024) on real speech, stage by stage.
# Does an exporter-coupled ASR -> MT cascade beat the 1-best cascade with the MT frozen, and does
# the gain go away once the MT is adapted to TED talks?
#
#   bash recipes/mustc/run.sh --mustc-root /data/MUSTC_v2.0       # everything; MT trained on MuST-C text
#   bash recipes/mustc/run.sh --mustc-root /data/MUSTC_v2.0 \
#       --mt-text /data/wmt/train --mt-valid-text /data/wmt/valid  # MT trained on general-domain text
#   bash recipes/mustc/run.sh --fairseq-manifests $MUSTC_ROOT/en-de \
#       --mt-checkpoint wmt/model.pt --mt-data wmt/bin --mt-src-bpe wmt/spm.en.model \
#       --mt-tgt-bpe wmt/spm.de.model --mt-arch transformer_wmt_en_de_big --mt-flags "--share-all-embeddings"
#       # reuse fairseq's prep_mustc_data.py output (--task asr and --task st) and your own MT
#   bash recipes/mustc/run.sh --stage 4 --stop-stage 6               # rerun from a stage
#
# Every setting below is also an option: --mustc-root DIR sets mustc_root, --asr-max-update N sets
# asr_max_update, and so on; --fp16 takes no value. Stages skip work whose outputs exist; a training
# that stopped resumes from its checkpoint_last.pt. Everything goes under --out: logs/ (one log per
# command), commands.sh (every command that ran), results.md (the table).
#
# GPUs: fairseq-train runs data-parallel on every visible GPU (CUDA_VISIBLE_DEVICES), one process
# each, by itself. The sizes below are fairseq's MuST-C ones, for one GPU (--update-freq 8 stands in
# for 8 GPUs): with N GPUs pass --update-freq $((8 / N)). Several nodes: a --train-launcher that
# starts fairseq-train's processes on all of them, from the one node running this script, e.g.
# --train-launcher "srun --nodes 2 --ntasks-per-node 1 --gres gpu:8" with --extra-train-flags
# "--distributed-port 12345" (fairseq reads Slurm's variables), or a torchrun with --no-python
# (fairseq reads its MASTER_ADDR/RANK/WORLD_SIZE). --fp16 for mixed precision.
set -euo pipefail

# ---- settings -------------------------------------------------------------------------------------
stage=0
stop_stage=100
mustc_root=              # the folder holding en-de/ of a MuST-C v1.0 or v2.0 release (or en-de/ itself)
lang=de
out=exp/mustc_en-de      # everything this recipe writes
fairseq_manifests=       # instead of computing fbank: the dir where fairseq's prep_mustc_data.py --task asr
                         # and --task st wrote {split}_asr.tsv and {split}_st.tsv (and fbank80.zip)
fairseq_config=          # the data config your ASR features were made for (CMVN, SpecAugment);
                         # default: $fairseq_manifests/config_asr.yaml when it exists
splits="train dev tst-COMMON tst-HE"
test_sets="tst-COMMON tst-HE"
workers=4                # processes computing fbank in stage 0
# The MT: your own fairseq translation checkpoint ...
mt_checkpoint=
mt_data=                 # the dir with its dict.en.txt and dict.$lang.txt (its fairseq-preprocess --destdir)
mt_src_bpe=none          # its source subword model: a sentencepiece .model, a JSON fairseq bpe_tokenizer
mt_tgt_bpe=none          #   ('{"bpe": "subword_nmt", "bpe_codes": "codes.en"}'), or none
mt_src_pre_tokenizer=none  # JSON fairseq pre_tokenizer, e.g. '{"tokenizer": "moses", "source_lang": "en"}'
mt_tgt_pre_tokenizer=none
# ... or one trained here on raw parallel text you name: $mt_text.en and $mt_text.$lang
mt_text=                 # default: MuST-C train (then the study has no domain shift to undo)
mt_valid_text=           # default: MuST-C dev
vocab_size=8000          # sentencepiece pieces per language for the MT trained here
# The ASR: trained here on MuST-C with targets in the MT source vocabulary, or your own.
asr_checkpoint=          # a fairseq speech_to_text checkpoint whose target dictionary IS the MT source one
asr_dict=                # its target dictionary, if the data dir recorded in it has moved
asr_encoder_init=        # an ASR with another vocabulary (e.g. fairseq's MuST-C ASR): its encoder
                         # starts the ASR trained here (--load-pretrained-encoder-from)
# Sizes: fairseq's MuST-C example (examples/speech_to_text/docs/mustc_example.md), for GPUs.
max_tokens=40000         # speech batches (ASR and exporter training)
update_freq=8
asr_arch=s2t_transformer_s
asr_lr=1e-3              # fairseq's MuST-C ASR value (its ST models use 2e-3)
asr_warmup=10000
asr_max_update=100000
mt_arch=transformer      # with --mt-checkpoint: its architecture (stage 7 fine-tunes it)
mt_flags="--share-decoder-input-output-embed --dropout 0.3 --weight-decay 0.0001"  # likewise
mt_max_tokens=4096
mt_update_freq=8
mt_lr=5e-4
mt_warmup=4000
mt_max_update=100000
mt_adapt_lr=1e-4
mt_adapt_warmup=1000
mt_adapt_max_update=10000
exporter_type=mlp
exporter_hidden_dim=1024
exporter_warmup=1000
stage1_lr=1e-3
stage1_max_update=10000
stage2_lr=2e-4
stage2_max_update=30000
asr_weight=0.3           # stage 2/3: ASR cross-entropy on the reference transcript, keeps WER in check
valid_interval=1000      # updates between dev BLEU checks (and saved checkpoints) of exporter training
beam=5
gen_max_tokens=50000
num_workers=4            # fairseq data loader processes
log_interval=100
seed=1
fp16=false
asr_flags=               # more fairseq-train flags: for the ASR,
mt_train_flags=          #   for the MT trained here and its stage-7 adaptation (not the model: --mt-flags),
exporter_flags=          #   for the exporter trainings,
extra_train_flags=       #   for every fairseq-train
generate_flags=          # more fairseq-generate flags
train_launcher=          # a command put before "python -m fairseq_cli.train" (srun ..., see GPUs above)
python=${PYTHON:-}
# ---- end of settings ------------------------------------------------------------------------------

tag=mustc
source "$(dirname "$0")/../lib.sh"  # log, die, run_step, run, step_done, mark_done, score

settings=$(sed -n '/^# ---- settings/,/^# ---- end of settings/s/^\([a-z][a-z0-9_]*\)=.*/\1/p' "$0")
while [ $# -gt 0 ]; do
  case $1 in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; sed -n '/^# ---- settings/,/^# ---- end/p' "$0"; exit 0 ;;
    --fp16) fp16=true; shift; continue ;;
  esac
  name=${1#--}; name=${name//-/_}
  if [[ $1 != --* ]] || ! grep -qx "$name" <<< "$settings"; then die "unknown option $1 (see --help)"; fi
  [ $# -ge 2 ] || die "option $1 needs a value"
  printf -v "$name" '%s' "$2"
  shift 2
done

repo=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "$python" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then python=$repo/.venv/bin/python; else python=python3; fi
fi
user_dir=$repo/fairseq_exporter
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
data=$out/data           # fbank80.zip or joined manifests, dictionaries, configs
text=$out/text           # MT text, raw and in dictionary symbols
gen=$out/gen             # fairseq-generate outputs and scores, gen/TEST_SET/SYSTEM/
commands=$out/commands.sh
logs=$out/logs
mkdir -p "$data" "$text" "$gen"
src=en
tgt=$lang
# One math thread per process, as torchrun sets it: with more, small CPU ops (and data loading
# beside GPU training) spin-wait on each other, several times slower on a busy machine.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# Flag strings become arrays; quotes inside them are honoured ("--adam-betas '(0.9, 0.98)'").
eval "asr_flags=($asr_flags)"
eval "mt_flags=($mt_flags)"
eval "mt_train_flags=($mt_train_flags)"
eval "exporter_flags=($exporter_flags)"
eval "extra_train_flags=($extra_train_flags)"
eval "generate_flags=($generate_flags)"
fp16_flag=(); [ "$fp16" = true ] && fp16_flag=(--fp16)
# --data-buffer-size 0: fairseq-train stopping at --max-update mid-epoch leaves its batch-prefetch
# thread alive at interpreter exit, which can abort the finished process ("terminate called
# without an active exception", exit 134); the loader's --num-workers still prefetch.
common=(--user-dir "$user_dir" --seed "$seed" --num-workers "$num_workers" --no-progress-bar
        --log-format json --log-interval "$log_interval" --no-epoch-checkpoints --data-buffer-size 0)

if [ -n "$mt_checkpoint" ]; then
  [ -f "$mt_checkpoint" ] || die "--mt-checkpoint $mt_checkpoint: no such file"
  [ -n "$mt_data" ] || die "--mt-checkpoint needs --mt-data: the dir with its dict.$src.txt and dict.$tgt.txt"
  mt=$(cd "$(dirname "$mt_checkpoint")" && pwd)/$(basename "$mt_checkpoint")
  mt_dicts=$(cd "$mt_data" && pwd)
else
  mt=$out/mt/checkpoint_best.pt
  mt_dicts=$out/mt-bin
fi
if [ -n "$asr_checkpoint" ]; then
  [ -f "$asr_checkpoint" ] || die "--asr-checkpoint $asr_checkpoint: no such file"
  asr=$(cd "$(dirname "$asr_checkpoint")" && pwd)/$(basename "$asr_checkpoint")
else
  asr=$out/asr/checkpoint_best.pt
fi
asr_dict_flag=(); [ -n "$asr_dict" ] && asr_dict_flag=(--asr-dict "$asr_dict")
mt_adapted=$out/mt-adapted/checkpoint_best.pt

eval "train_runner=($train_launcher \"\$python\" -m)"
# fairseq-train into SAVE_DIR unless SAVE_DIR/done-train says it finished; a stopped run resumes.
train() {
  local name=$1 save=$2; shift 2
  if step_done "$save" train; then log "  $name: done before, skipped ($save)"; return; fi
  run_step "train-$name" "${train_runner[@]}" fairseq_cli.train "$@" --save-dir "$save" "${common[@]}" \
    "${extra_train_flags[@]}" "${fp16_flag[@]}"
  mark_done "$save" train
  log "  $name: $(grep -E '\| (dev|valid|dev_asr) \|' "$out/logs/train-$name.log" | tail -n 1 | sed 's/.*| \(dev\|valid\|dev_asr\) | //' | cut -c1-200)"
}
# The raw src_text / tgt_text column of a manifest of this recipe (id audio n_frames src_text tgt_text speaker).
manifest_text() { tail -n +2 "$1" | cut -f "$2"; }
# Raw text files -> $text/bpe/(same names) in dictionary symbols, with the tokenizers of config_st.yaml
# (the very ones the speech data's transcripts and translations go through).
encode() {  # name PREFIX...: PREFIX.$src through the source tokenizers, PREFIX.$tgt through the target ones
  local name=$1; shift
  run "encode-$name" fairseq_exporter.cli.prep_mustc encode --config "$data/config_st.yaml" --out-dir "$text/bpe" \
    --src "${@/%/.$src}" --tgt "${@/%/.$tgt}"
}

exporter_train() {  # name mt_checkpoint mt_dictionaries extra-flags...
  local name=$1 mt_ckpt=$2 mt_dict_dir=$3; shift 3
  train "$name" "$out/$name" "$data" \
    --task speech_to_text_exporter --config-yaml config_st.yaml --train-subset train --valid-subset dev \
    --arch exporter --asr-checkpoint "$asr" --mt-checkpoint "$mt_ckpt" --mt-data "$mt_dict_dir" \
    "${asr_dict_flag[@]}" --exporter-type "$exporter_type" --exporter-hidden-dim "$exporter_hidden_dim" \
    --criterion exporter --label-smoothing 0.1 \
    --optimizer adam --adam-betas '(0.9, 0.98)' --lr-scheduler inverse_sqrt --warmup-updates "$exporter_warmup" \
    --clip-norm 10.0 --max-tokens "$max_tokens" --update-freq "$update_freq" \
    --eval-bleu --best-checkpoint-metric bleu --maximize-best-checkpoint-metric \
    --validate-interval-updates "$valid_interval" --save-interval-updates "$valid_interval" \
    --keep-interval-updates 1 "$@" "${exporter_flags[@]}"
}

# fairseq-generate one coupling of a checkpoint on every test set, then fairseq-exporter-score it
# (against BASELINE, a system evaluated before, with sacreBLEU's paired bootstrap).
evaluate() {  # system checkpoint coupling [baseline]
  local system=$1 ckpt=$2 coupling=$3 baseline=${4:-} test dir
  for test in $test_sets; do
    dir=$gen/$test/$system
    if ! grep -qs "^Generate $test " "$dir/generate-$test.txt"; then
      run "generate-$test-$system" fairseq_cli.generate "$data" --user-dir "$user_dir" \
        --task speech_to_text_exporter --config-yaml config_st.yaml --gen-subset "$test" \
        --path "$ckpt" --coupling "$coupling" --beam "$beam" --max-tokens "$gen_max_tokens" \
        --results-path "$dir" "${fp16_flag[@]}" "${generate_flags[@]}"
    fi
    if [ -n "$baseline" ] && [ ! -f "$dir/score.json" ]; then
      score "$test-$system" "$dir/generate-$test.txt" "$gen/$test/$baseline/generate-$test.txt"
    fi
  done
}

if [ $stage -le 0 ] && [ $stop_stage -ge 0 ]; then
  missing=$(for split in $splits; do for m in "$split" "${split}_asr"; do [ -f "$data/$m.tsv" ] || echo "$m.tsv"; done; done)
  if [ -z "$missing" ]; then
    log "Stage 0: the manifests of $splits exist in $data, skipped"
  elif [ -n "$fairseq_manifests" ]; then
    log "Stage 0: join fairseq's {split}_asr.tsv and {split}_st.tsv by id (features reused, not recomputed)"
    run join-manifests fairseq_exporter.cli.join_manifests --from "$fairseq_manifests" --out "$data" \
      --splits $splits
    sed -n '/^|/p' "$out/logs/join-manifests.log"
  else
    log "Stage 0: MuST-C wav + yaml -> fbank80.zip and manifests (kaldi-native-fbank, no torchaudio)"
    [ -n "$mustc_root" ] || die "stage 0 needs --mustc-root DIR (or --fairseq-manifests DIR)"
    run prep-features fairseq_exporter.cli.prep_mustc features --mustc-root "$mustc_root" --lang "$lang" \
      --out "$data" --splits $splits --workers "$workers"
    sed -n '/^|/p' "$out/logs/prep-features.log"
  fi
fi

if [ $stage -le 1 ] && [ $stop_stage -ge 1 ]; then
  log "Stage 1: vocabularies and data configs (the ASR writes, and the exporter task reads, the MT source vocabulary)"
  if [ -z "$mt_checkpoint" ]; then  # the MT trained here: sentencepiece per language on its training text
    mkdir -p "$text/raw"
    for l in $src $tgt; do
      column=$([ $l = $src ] && echo 4 || echo 5)
      if [ -n "$mt_text" ]; then cp "$mt_text.$l" "$text/raw/mt.train.$l"; else manifest_text "$data/train.tsv" $column > "$text/raw/mt.train.$l"; fi
      if [ -n "$mt_valid_text" ]; then cp "$mt_valid_text.$l" "$text/raw/mt.valid.$l"; else manifest_text "$data/dev.tsv" $column > "$text/raw/mt.valid.$l"; fi
    done
    if [ ! -f "$data/spm_$tgt.model" ]; then
      run vocab fairseq_exporter.cli.prep_mustc vocab --text-prefix "$text/raw/mt.train" --langs $src "$tgt" \
        --data "$data" --vocab-size "$vocab_size" --model-type unigram
    fi
    mt_src_bpe=$data/spm_$src.model mt_tgt_bpe=$data/spm_$tgt.model
    mt_src_pre_tokenizer=none mt_tgt_pre_tokenizer=none
    src_dict=$data/dict.$src.txt tgt_dict=$data/dict.$tgt.txt
  else
    src_dict=$mt_dicts/dict.$src.txt tgt_dict=$mt_dicts/dict.$tgt.txt
  fi
  if [ -f "$data/config_st.yaml" ] && [ -f "$data/config_asr.yaml" ]; then
    log "  $data/config_st.yaml and config_asr.yaml exist, kept (remove them to rewrite)"
  else
    features_like=()
    if [ -z "$fairseq_config" ] && [ -n "$fairseq_manifests" ] && [ -f "$fairseq_manifests/config_asr.yaml" ]; then
      fairseq_config=$fairseq_manifests/config_asr.yaml  # normalize features as fairseq's ASR saw them
    fi
    [ -n "$fairseq_config" ] && features_like=(--features-like "$fairseq_config")
    run prep-config fairseq_exporter.cli.prep_mustc config --data "$data" \
      --src-dict "$src_dict" --tgt-dict "$tgt_dict" --src-bpe "$mt_src_bpe" --tgt-bpe "$mt_tgt_bpe" \
      --src-pre-tokenizer "$mt_src_pre_tokenizer" --tgt-pre-tokenizer "$mt_tgt_pre_tokenizer" "${features_like[@]}"
    sed -n '/^|/p' "$out/logs/prep-config.log"
  fi
fi

if [ $stage -le 2 ] && [ $stop_stage -ge 2 ]; then
  if [ -n "$mt_checkpoint" ]; then
    log "Stage 2: MT: yours, $mt (dictionaries from $mt_dicts)"
  else
    log "Stage 2: MT on $( [ -n "$mt_text" ] && echo "$mt_text" || echo 'MuST-C train') (fairseq-preprocess + fairseq-train $mt_arch)"
    [ -f "$text/bpe/mt.valid.$tgt" ] || encode mt "$text/raw/mt.train" "$text/raw/mt.valid"
    if [ ! -f "$out/mt-bin/train.$src-$tgt.$src.bin" ]; then
      run preprocess-mt fairseq_cli.preprocess --source-lang $src --target-lang "$tgt" \
        --trainpref "$text/bpe/mt.train" --validpref "$text/bpe/mt.valid" \
        --srcdict "$data/dict.$src.txt" --tgtdict "$data/dict.$tgt.txt" --destdir "$out/mt-bin" --workers "$workers"
    fi
    train mt "$out/mt" "$out/mt-bin" --task translation --source-lang $src --target-lang "$tgt" \
      --arch "$mt_arch" "${mt_flags[@]}" \
      --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
      --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm 0.0 --lr "$mt_lr" --lr-scheduler inverse_sqrt \
      --warmup-updates "$mt_warmup" --max-tokens "$mt_max_tokens" --update-freq "$mt_update_freq" \
      --max-update "$mt_max_update" "${mt_train_flags[@]}"
  fi
fi

if [ $stage -le 3 ] && [ $stop_stage -ge 3 ]; then
  if [ -n "$asr_checkpoint" ]; then
    log "Stage 3: ASR: yours, $asr"
  else
    log "Stage 3: ASR on MuST-C, targets in the MT source vocabulary (fairseq-train speech_to_text $asr_arch)"
    asr_init=(); [ -n "$asr_encoder_init" ] && asr_init=(--load-pretrained-encoder-from "$asr_encoder_init")
    train asr "$out/asr" "$data" --task speech_to_text --config-yaml config_asr.yaml \
      --train-subset train_asr --valid-subset dev_asr --arch "$asr_arch" "${asr_init[@]}" \
      --criterion label_smoothed_cross_entropy --label-smoothing 0.1 --report-accuracy \
      --optimizer adam --lr "$asr_lr" --lr-scheduler inverse_sqrt --warmup-updates "$asr_warmup" \
      --clip-norm 10.0 --max-tokens "$max_tokens" --update-freq "$update_freq" --max-update "$asr_max_update" \
      "${asr_flags[@]}"
  fi
fi

if [ $stage -le 4 ] && [ $stop_stage -ge 4 ]; then
  log "Stage 4: paper stage 1, the exporter alone (ASR and MT frozen, L2 to the MT embeddings of the 1-best)"
  exporter_train stage1 "$mt" "$mt_dicts" \
    --freeze-asr --freeze-mt --ast-weight 0 --l2-weight 1 --lr "$stage1_lr" --max-update "$stage1_max_update"
fi

if [ $stage -le 5 ] && [ $stop_stage -ge 5 ]; then
  log "Stage 5: the 1-best cascade (baseline) and paper stage 1 on $test_sets"
  evaluate onebest "$out/stage1/checkpoint_best.pt" onebest
  evaluate stage1 "$out/stage1/checkpoint_best.pt" exporter onebest
fi

if [ $stage -le 6 ] && [ $stop_stage -ge 6 ]; then
  log "Stage 6: paper stage 2, ASR + exporter fine-tuned through the frozen MT"
  exporter_train stage2 "$mt" "$mt_dicts" --finetune-from-model "$out/stage1/checkpoint_best.pt" \
    --freeze-mt --ast-weight 1 --l2-weight 1 --asr-weight "$asr_weight" \
    --lr "$stage2_lr" --max-update "$stage2_max_update"
  evaluate stage2 "$out/stage2/checkpoint_best.pt" exporter onebest
fi

if [ $stage -le 7 ] && [ $stop_stage -ge 7 ]; then
  log "Stage 7: paper stage 3, the MT incrementally trained on MuST-C En-$tgt text, then the exporter on it"
  if [ ! -f "$text/bpe/task.dev.$tgt" ]; then
    mkdir -p "$text/raw"
    for split in train dev; do
      manifest_text "$data/$split.tsv" 4 > "$text/raw/task.$split.$src"
      manifest_text "$data/$split.tsv" 5 > "$text/raw/task.$split.$tgt"
    done
    encode task "$text/raw/task.train" "$text/raw/task.dev"
  fi
  if [ ! -f "$out/mt-task-bin/train.$src-$tgt.$src.bin" ]; then
    run preprocess-mt-task fairseq_cli.preprocess --source-lang $src --target-lang "$tgt" \
      --trainpref "$text/bpe/task.train" --validpref "$text/bpe/task.dev" \
      --srcdict "$mt_dicts/dict.$src.txt" --tgtdict "$mt_dicts/dict.$tgt.txt" --destdir "$out/mt-task-bin" --workers "$workers"
  fi
  train mt-adapted "$out/mt-adapted" "$out/mt-task-bin" --task translation --source-lang $src --target-lang "$tgt" \
    --arch "$mt_arch" "${mt_flags[@]}" --finetune-from-model "$mt" \
    --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
    --optimizer adam --adam-betas '(0.9, 0.98)' --lr "$mt_adapt_lr" --lr-scheduler inverse_sqrt \
    --warmup-updates "$mt_adapt_warmup" --max-tokens "$mt_max_tokens" --update-freq "$mt_update_freq" \
    --max-update "$mt_adapt_max_update" "${mt_train_flags[@]}"
  exporter_train stage3-exporter "$mt_adapted" "$out/mt-task-bin" \
    --freeze-asr --freeze-mt --ast-weight 0 --l2-weight 1 --lr "$stage1_lr" --max-update "$stage1_max_update"
  evaluate adapted-onebest "$out/stage3-exporter/checkpoint_best.pt" onebest
  exporter_train stage3 "$mt_adapted" "$out/mt-task-bin" --finetune-from-model "$out/stage3-exporter/checkpoint_best.pt" \
    --freeze-mt --ast-weight 1 --l2-weight 1 --asr-weight "$asr_weight" \
    --lr "$stage2_lr" --max-update "$stage2_max_update"
  evaluate stage3 "$out/stage3/checkpoint_best.pt" exporter adapted-onebest
fi

if [ $stage -le 8 ] && [ $stop_stage -ge 8 ]; then
  log "Stage 8: results table ($out/results.md)"
  # a report of what is there, remade on every run: not a step of commands.sh
  "$python" -m fairseq_exporter.results_table "$gen" "$out/results.md" $test_sets \
    --title "MuST-C: exporter-coupled cascade vs 1-best cascade" \
    --row "1-best cascade=onebest" --row "stage 1: exporter only (ASR, MT frozen)=stage1:onebest" \
    --row "stage 2: ASR + exporter, MT frozen=stage2:onebest" --row "adapted MT: 1-best cascade=adapted-onebest" \
    --row "stage 3: ASR + exporter, adapted MT frozen=stage3:adapted-onebest"
fi
