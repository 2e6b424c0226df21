"""A transformer MT of which only the source token-embedding table trains: the toy study's
text-only ablation (``--arch source_table_transformer``, from a trained MT with
``--finetune-from-model``). It asks whether the gain of stage 2, which trains a copy of that
table inside the exporter, is reachable from the task's text alone, without speech."""

from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerModel, base_architecture

TRAINED = "encoder.embed_tokens.weight"


@register_model("source_table_transformer")
class SourceTableTransformerModel(TransformerModel):
    @classmethod
    def build_model(cls, args, task):
        if getattr(args, "share_all_embeddings", False):
            # the table is then also the decoder's: the model would change on the output side too
            raise ValueError("--arch source_table_transformer trains the source embedding table alone: "
                             "it cannot be used with --share-all-embeddings")
        model = super().build_model(args, task)
        for name, param in model.named_parameters():
            param.requires_grad_(name == TRAINED)
        return model


@register_model_architecture("source_table_transformer", "source_table_transformer")
def source_table_transformer(args):
    base_architecture(args)
