"""Build the exporter task and model in-process exactly as fairseq-train does
(same parser, same config conversion), for tests of the model itself."""

from fairseq import options, tasks
from fairseq.dataclass.utils import convert_namespace_to_omegaconf

from conftest import USER_DIR


def train_args(cascade, *extra, text_model=None):
    """``text_model``: the options naming the text model (default: the cascade's MT)."""
    text_model = text_model or ("--mt-checkpoint", str(cascade["mt"]))
    return [str(cascade["s2t"]), "--user-dir", USER_DIR, "--task", "speech_to_text_exporter",
            "--config-yaml", "config_st.yaml", "--arch", "exporter", "--criterion", "exporter",
            "--asr-checkpoint", str(cascade["asr"]), *text_model,
            "--optimizer", "adam", "--lr", "0.001", "--max-tokens", "4000", *extra]


def build(cascade, *extra, text_model=None):
    parser = options.get_training_parser()
    args = options.parse_args_and_arch(parser, train_args(cascade, *extra, text_model=text_model))
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    return cfg, task, model, criterion


def first_batch(task, split="test", max_sentences=None):
    task.load_dataset(split)
    itr = task.get_batch_iterator(dataset=task.dataset(split), max_tokens=4000,
                                  max_sentences=max_sentences).next_epoch_itr(shuffle=False)
    return next(iter(itr))
