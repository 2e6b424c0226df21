"""What of the exporter cascade trains: the parameters a loss can reach, given the
coupling and the loss weights (a model fact: which parts its forward uses), and the
ExporterModel inside fairseq's distributed wrappers."""

import logging

import torch

logger = logging.getLogger(__name__)


def unwrap(model):
    """The ExporterModel inside fairseq's distributed wrappers (ModuleProxyWrapper
    around torch's DistributedDataParallel or fairseq's LegacyDistributedDataParallel:
    two levels of ``.module``)."""
    while isinstance(getattr(model, "module", None), torch.nn.Module):
        model = model.module
    return model


def _params(module, skip=()):
    return {id(p) for n, p in module.named_parameters() if not n.startswith(skip)}


def parameters_the_loss_uses(model, coupling: str, ast_weight: float, l2_weight: float,
                             asr_weight: float):
    """ids of the parameters that receive a gradient from this criterion's forward, for
    the given coupling and loss weights. Mirrors ``ExporterCriterion.forward``:
    the 1-best search runs without gradient, so the ASR output projection is used only
    by the --asr-weight term; with the exporter coupling the MT encoder never looks up
    its own embedding table (the exporter output replaces it; the L2 target is detached)."""
    encoder = model.encoder
    asr, used = encoder.asr, set()
    if getattr(encoder, "source", "decoder") == "ctc":
        # the token states are pooled encoder frames; the ASR scores (posterior coupling,
        # and the CTC loss of --asr-weight) come from the encoder's CTC head
        asr_states = _params(asr.encoder, skip=("ctc_proj.",))
        asr_scores = _params(asr.encoder)
    else:
        # ASR encoder + decoder body: what the teacher-forced token states are made of
        asr_states = _params(asr.encoder, skip=("ctc_proj.",)) | _params(asr.decoder, skip=("output_projection.",))
        asr_scores = asr_states | _params(asr.decoder)
    if coupling == "exporter" and (l2_weight > 0 or ast_weight > 0):
        used |= _params(encoder.exporter) | asr_states
    if coupling == "posterior" and (l2_weight > 0 or ast_weight > 0):
        # softmax(ASR scores) @ the text model's table replaces the lookup
        used |= asr_scores | {id(p) for p in encoder.text.table_parameters()}
    if ast_weight > 0:
        used |= {id(p) for p in encoder.text.translation_parameters(looks_up=coupling != "exporter")}
    if asr_weight > 0:
        used |= asr_scores
    return used


def freeze_parameters_the_loss_never_uses(model, coupling, ast_weight, l2_weight, asr_weight):
    """Take the parameters no gradient can reach out of training. Without this,
    torch's DistributedDataParallel stops at the second update ("Expected to have
    finished reduction in the prior iteration") unless --find-unused-parameters is set;
    one process would leave them unchanged anyway (no gradient, no optimizer step)."""
    used = parameters_the_loss_uses(model, coupling, ast_weight, l2_weight, asr_weight)
    unused = [(n, p) for n, p in model.named_parameters() if p.requires_grad and id(p) not in used]
    for _, p in unused:
        p.requires_grad_(False)
    if unused:
        logger.info(f"not trained, no gradient reaches them with --coupling {coupling} --ast-weight {ast_weight} "
                    f"--l2-weight {l2_weight} --asr-weight {asr_weight}: "
                    f"{', '.join(n for n, _ in unused[:8])}{' ...' if len(unused) > 8 else ''} "
                    f"({sum(p.numel() for _, p in unused):,} params)")
    return [n for n, _ in unused]
