"""Write tiny random fish-speech 0.1.0 checkpoints; run it with the SERVER env's python.

    python -P tests/tooling/tiny_checkpoints.py DEST CODEC_CONFIG_NAME

(-P: the script's folder holds tests/tooling/fish_speech/, which must not shadow the package.)

DEST receives what `--llama-checkpoint-path` expects (config.json, model.pth, tokenizer.tiktoken,
special_tokens.json) plus `codec.pth` for `--decoder-checkpoint-path`. Fixed seeds make every file
byte-identical across runs.
"""

import base64
import sys
from pathlib import Path

import fish_speech.models.dac.inference as dac_inference
import torch
from fish_speech.models.text2semantic.llama import DualARModelArgs, DualARTransformer
from fish_speech.tokenizer import IM_END_TOKEN, FishTokenizer
from hydra.utils import instantiate
from omegaconf import OmegaConf

SEED = 0
# 256 byte tokens + 15 control tokens + 1024 semantic tokens (fish_speech.tokenizer).
VOCAB_SIZE = 1295
# max_seq_len must exceed 2048 + prompt: generate_long rejects prompts over max_seq_len - 2048.
LLAMA_CONFIG = dict(
    vocab_size=VOCAB_SIZE,
    n_layer=2,
    n_head=2,
    n_local_heads=2,
    dim=64,
    head_dim=32,
    intermediate_size=128,
    n_fast_layer=1,
    codebook_size=1024,
    num_codebooks=2,
    max_seq_len=4096,
    tie_word_embeddings=True,
)
# Residual-stream dimension pinned to a constant so the end token's logit can be pushed far down.
ANCHOR = 0
END_TOKEN_WEIGHT = -1000.0
# Derived (not learned) codec buffers: the model recomputes them, so leave them out of codec.pth.
DERIVED_CODEC_BUFFERS = ("causal_mask", "freqs_cis")


def write_tokenizer(dest: Path) -> FishTokenizer:
    """A byte-level tiktoken file; save_pretrained adds special_tokens.json in its own format."""
    ranks = "".join(f"{base64.b64encode(bytes([i])).decode()} {i}\n" for i in range(256))
    (dest / "tokenizer.tiktoken").write_text(ranks)
    tokenizer = FishTokenizer(str(dest / "tokenizer.tiktoken"))
    tokenizer.save_pretrained(dest)
    return tokenizer


def make_end_token_unreachable(model: DualARTransformer) -> None:
    """Random weights rarely sample <|im_end|>, so lengths would vary with the seed and the text.

    Every input embedding gets +1 in the ANCHOR dimension and no layer writes into it, so the final
    normed state is always positive there; with tied embeddings the end token's row then scores
    about -7000 (the others about +7), so its probability is exactly 0 and every request yields
    max_new_tokens - 1 frames.
    """
    end_id = model.tokenizer.get_token_id(IM_END_TOKEN)
    with torch.no_grad():
        model.embeddings.weight[:, ANCHOR] = 1.0
        model.embeddings.weight[end_id, ANCHOR] = END_TOKEN_WEIGHT
        model.codebook_embeddings.weight[:, ANCHOR] = 0.0
        for layer in model.layers:
            layer.attention.wo.weight[ANCHOR] = 0.0
            layer.feed_forward.w2.weight[ANCHOR] = 0.0


def build_llama(dest: Path) -> None:
    tokenizer = write_tokenizer(dest)
    assert tokenizer.vocab_size + tokenizer.num_special_tokens == VOCAB_SIZE
    torch.manual_seed(SEED)
    model = DualARTransformer(DualARModelArgs(**LLAMA_CONFIG), tokenizer=tokenizer)
    make_end_token_unreachable(model)
    model.save_pretrained(dest)


def build_codec(dest: Path, config_name: str) -> None:
    # Read the file the server reads: Hydra's config_path="../../configs" beside dac/inference.py.
    config = Path(dac_inference.__file__).parents[2] / "configs" / f"{config_name}.yaml"
    torch.manual_seed(SEED)
    model = instantiate(OmegaConf.load(config))
    state = {
        key: value
        for key, value in model.state_dict().items()
        if not key.endswith(DERIVED_CODEC_BUFFERS)
    }
    torch.save(state, dest / "codec.pth")


def main(dest: str, codec_config_name: str) -> None:
    path = Path(dest)
    path.mkdir(parents=True, exist_ok=True)
    build_llama(path)
    build_codec(path, codec_config_name)


if __name__ == "__main__":
    main(*sys.argv[1:])
