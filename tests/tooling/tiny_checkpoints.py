"""Write random-weight fish-speech checkpoints; run it with the SERVER env's python.

    python -P tests/tooling/tiny_checkpoints.py DEST GENERATION SHAPE CODEC_CONFIG_NAME

with the fish-speech source of that generation importable (`fish_speech` of the env's 0.1.0, or a
git source first on PYTHONPATH). -P: the script's folder holds tests/tooling/fish_speech/, which
must not shadow the package.

GENERATION is the checkpoint layout the server loads:
- s1 (fish-speech 0.1.0 and git up to d3df505, OpenAudio S1): config.json, model.pth,
  tokenizer.tiktoken, special_tokens.json;
- s2 (git from 2026-03, Fish Audio S2 "s2-pro"): config.json (flat dual_ar), model.safetensors,
  Hugging Face tokenizer.json + tokenizer_config.json.
Both also get `codec.pth` for `--decoder-checkpoint-path`, built from the codec yaml the server
reads. SHAPE names an entry of SHAPES: the model's size is data, so a real-size random model of the
same architecture (say for a GPU benchmark) is one more entry there plus upstream's codec config
(`modded_dac_vq`). Fixed seeds make every file byte-identical across runs.
"""

import base64
import itertools
import sys
from pathlib import Path

import fish_speech.models.dac.inference as dac_inference
import torch
from fish_speech import tokenizer as fish_tokenizer
from fish_speech.models.text2semantic.llama import DualARModelArgs, DualARTransformer
from hydra.utils import instantiate
from omegaconf import OmegaConf

SEED = 0
# DualARModelArgs per generation and size. vocab_size defaults to what the byte-level tokenizer
# uses; a real-size shape sets the real one (unused rows cost what they cost in the real model).
# max_seq_len must exceed 2048 + prompt: generate_long rejects prompts over max_seq_len - 2048.
TINY_DUAL_AR = dict(
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
SHAPES = {
    "s1": {"tiny": TINY_DUAL_AR},
    "s2": {"tiny": TINY_DUAL_AR},
}
# Residual-stream dimension pinned to a constant so the end token's logit can be pushed far down.
ANCHOR = 0
END_TOKEN_WEIGHT = -1000.0
# Derived (not learned) buffers: the models recompute them, and real checkpoints leave them out.
DERIVED_BUFFERS = ("causal_mask", "freqs_cis")
SEMANTIC_PREFIX = "<|semantic:"
# Byte-level BPE entries before the control tokens: the 256 single bytes. A real-size model passes
# its real count (the output head over the whole vocabulary is a real cost of every step).
BYTE_TOKENS = 256


def semantic_index(token: str) -> int | None:
    return int(token[len(SEMANTIC_PREFIX) : -2]) if token.startswith(SEMANTIC_PREFIX) else None


def special_tokens(codebook_size: int) -> list[str]:
    """The generation's control tokens, then one semantic token per codebook entry.

    fish_speech.tokenizer lists 4096 semantic tokens from d3df505 on (0.1.0: 1024); a model with
    a smaller codebook needs only the first codebook_size of them, which keeps the vocabulary (and
    so config.json) the same for 0.1.0 and d3df505.
    """
    return [
        token
        for token in fish_tokenizer.ALL_SPECIAL_TOKENS
        if (index := semantic_index(token)) is None or index < codebook_size
    ]


def byte_sequences(count: int, alphabet: list) -> list:
    """The alphabet's single symbols, then 2- and 3-symbol sequences up to `count` entries:
    distinct tokens that are never merged (no merges), so a vocabulary of any size loads fast
    (as many added special tokens would not: tiktoken compiles them into one regex, and Hugging
    Face tokenizers take minutes to save and load them)."""
    longer = (
        alphabet[0][:0].join(symbols)
        for n in (2, 3)
        for symbols in itertools.product(alphabet, repeat=n)
    )
    return alphabet + list(itertools.islice(longer, max(0, count - len(alphabet))))


def write_s1_tokenizer(dest: Path, codebook_size: int, bpe_entries: int = BYTE_TOKENS):
    """A byte-level tiktoken file; save_pretrained adds special_tokens.json in its own format."""
    tokens = byte_sequences(bpe_entries, [bytes([i]) for i in range(256)])
    ranks = "".join(f"{base64.b64encode(token).decode()} {i}\n" for i, token in enumerate(tokens))
    (dest / "tokenizer.tiktoken").write_text(ranks)
    tokenizer = fish_tokenizer.FishTokenizer(
        str(dest / "tokenizer.tiktoken"), special_tokens(codebook_size)
    )
    tokenizer.save_pretrained(dest)
    return tokenizer


def write_s2_tokenizer(dest: Path, codebook_size: int, bpe_entries: int = BYTE_TOKENS):
    """A Hugging Face byte-level tokenizer: byte tokens, no merges, the control and semantic
    tokens as added special tokens (as AutoTokenizer loads the real s2-pro one)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    vocab = byte_sequences(bpe_entries, sorted(pre_tokenizers.ByteLevel.alphabet()))
    core = Tokenizer(models.BPE(vocab={text: i for i, text in enumerate(vocab)}, merges=[]))
    core.pre_tokenizer = byte_level
    core.decoder = decoders.ByteLevel()
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=fish_tokenizer.EOS_TOKEN,
        pad_token=fish_tokenizer.PAD_TOKEN,
        additional_special_tokens=special_tokens(codebook_size),
    )
    wrapped.save_pretrained(dest)
    return fish_tokenizer.FishTokenizer.from_pretrained(str(dest))


def make_end_token_unreachable(model: DualARTransformer, end_id: int) -> None:
    """Random weights rarely sample <|im_end|>, so lengths would vary with the seed and the text.

    Every input embedding gets +1 in the ANCHOR dimension and no layer writes into it, so the final
    normed state is always positive there; with tied embeddings the end token's row then scores
    about -7000 (the others about +7), so its probability is exactly 0 and every request yields
    max_new_tokens - 1 frames.
    """
    with torch.no_grad():
        model.embeddings.weight[:, ANCHOR] = 1.0
        model.embeddings.weight[end_id, ANCHOR] = END_TOKEN_WEIGHT
        model.codebook_embeddings.weight[:, ANCHOR] = 0.0
        for layer in model.layers:
            layer.attention.wo.weight[ANCHOR] = 0.0
            layer.feed_forward.w2.weight[ANCHOR] = 0.0


def build_s1_llama(dest: Path, shape: dict, bpe_entries: int) -> None:
    tokenizer = write_s1_tokenizer(dest, shape["codebook_size"], bpe_entries)
    vocab_size = tokenizer.vocab_size + tokenizer.num_special_tokens
    config = DualARModelArgs(**{"vocab_size": vocab_size, **shape})
    torch.manual_seed(SEED)
    model = DualARTransformer(config, tokenizer=tokenizer)
    make_end_token_unreachable(model, tokenizer.get_token_id(fish_tokenizer.IM_END_TOKEN))
    model.save_pretrained(dest)


def build_s2_llama(dest: Path, shape: dict, bpe_entries: int) -> None:
    from safetensors.torch import save_file

    tokenizer = write_s2_tokenizer(dest, shape["codebook_size"], bpe_entries)
    config = DualARModelArgs(
        **{"vocab_size": len(tokenizer._tokenizer), **shape},
        semantic_begin_id=tokenizer.semantic_begin_id,
        semantic_end_id=tokenizer.semantic_end_id,
    )
    torch.manual_seed(SEED)
    model = DualARTransformer(config)
    make_end_token_unreachable(model, tokenizer.get_token_id(fish_tokenizer.IM_END_TOKEN))
    config.save(dest / "config.json")
    save_file(learned_weights(model), dest / "model.safetensors")


def learned_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        key: value.contiguous()
        for key, value in model.state_dict().items()
        if not key.endswith(DERIVED_BUFFERS)
    }


def build_codec(dest: Path, config_name: str) -> None:
    # Read the file the server reads: Hydra's config_path="../../configs" beside dac/inference.py.
    config = Path(dac_inference.__file__).parents[2] / "configs" / f"{config_name}.yaml"
    torch.manual_seed(SEED)
    model = instantiate(OmegaConf.load(config))
    torch.save(learned_weights(model), dest / "codec.pth")


LLAMA_BUILDERS = {"s1": build_s1_llama, "s2": build_s2_llama}


def build(
    dest: Path, generation: str, shape: dict, codec_config_name: str, bpe_entries: int = BYTE_TOKENS
) -> None:
    """A checkpoint of `generation` with the DualARModelArgs `shape` into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    LLAMA_BUILDERS[generation](dest, shape, bpe_entries)
    build_codec(dest, codec_config_name)


def main(dest: str, generation: str, shape: str, codec_config_name: str) -> None:
    build(Path(dest), generation, SHAPES[generation][shape], codec_config_name)


if __name__ == "__main__":
    main(*sys.argv[1:])
