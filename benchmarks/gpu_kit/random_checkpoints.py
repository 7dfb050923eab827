"""Random-weight checkpoints at the real models' shapes, for the GPU kit; run with the SERVER's
python and the fish-speech source of the generation first on PYTHONPATH:

    python -P benchmarks/gpu_kit/random_checkpoints.py DEST GENERATION SHAPE CODEC_CONFIG_NAME

The test suite's builder (tests/tooling/tiny_checkpoints.py: tokenizer, DualAR, end-token trick,
codec from the yaml the server reads) does the work; this passes it the real shapes and the real
number of tokenizer ids (the output head over the whole vocabulary is a real
cost of every decoding step, about an eighth of S1-mini's weights). Weights are written in bf16,
as the servers run them (their default precision), so files and load times are real-sized.

Where each number comes from (none could be downloaded here; the search tool's stored copies):
- s2-pro: its config.json (huggingface.co/fishaudio/s2-pro, seen 2026-11):
  text_config dim 2560, n_layer 36, n_head 32, n_local_heads 8, head_dim 128, intermediate_size
  9728, attention_qk_norm true, norm_eps 1e-6, rope_base 1e6; audio_decoder_config (the fast
  layers) dim 2560, n_layer 4, n_head 32, n_local_heads 8, head_dim 128, intermediate_size 9728,
  attention_qk_norm false, num_codebooks 10, vocab_size (codebook size) 4096; semantic tokens
  151678..155773, so 151678 ids come before them. Not in the stored excerpt: text_config's
  tie_word_embeddings; stand-in: true, as in Qwen3-4B, whose text shape this is.
- s1-mini: the openaudio-s1-mini config.json was NOT found. Stand-in: its text model is said to
  be a 0.5B Qwen3 derivative with Qwen2's 151,643-token BPE (a stored S1-mini tokenizer shim
  says so), so the slow transformer takes Qwen3-0.6B's published config (hidden 1024, 28
  layers, 16 heads, 8 KV heads, head_dim 128, intermediate 3072, qk-norm, rope 1e6, tied
  embeddings); the fast transformer takes the DualARModelArgs defaults (4 layers of the slow
  one's width, as s2-pro's audio decoder has 4); 10 codebooks of 4096 entries as the codec it
  pairs with (modded_dac_vq.yaml in d3df505: 1 semantic codebook of 4096 + 9 residual).
- max_seq_len (it sizes each server's KV cache, so GPU memory per replica): s2-pro's 32768; the
  S1-mini value was not found, the same stand-in.
- The codec: modded_dac_vq.yaml of each source, unchanged (CODEC_CONFIG_NAME).
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "tooling"))

import tiny_checkpoints as builder  # noqa: E402

QWEN_BPE_TOKENS = 151643  # Qwen2/Qwen3 byte-level BPE: ids before the control tokens
S2_IDS_BEFORE_SEMANTIC = 151678  # s2-pro config.json: semantic_start_token_id
REAL_SHAPES = {
    "s1": {
        "s1-mini": dict(
            n_layer=28,
            n_head=16,
            n_local_heads=8,
            dim=1024,
            head_dim=128,
            intermediate_size=3072,
            attention_qk_norm=True,
            rope_base=1_000_000,
            norm_eps=1e-6,
            n_fast_layer=4,
            codebook_size=4096,
            num_codebooks=10,
            max_seq_len=32768,
            tie_word_embeddings=True,
        )
    },
    "s2": {
        "s2-pro": dict(
            n_layer=36,
            n_head=32,
            n_local_heads=8,
            dim=2560,
            head_dim=128,
            intermediate_size=9728,
            attention_qk_norm=True,
            rope_base=1_000_000,
            norm_eps=1e-6,
            n_fast_layer=4,
            fast_dim=2560,
            fast_n_head=32,
            fast_n_local_heads=8,
            fast_head_dim=128,
            fast_intermediate_size=9728,
            fast_attention_qk_norm=False,
            codebook_size=4096,
            num_codebooks=10,
            max_seq_len=32768,
            tie_word_embeddings=True,
        )
    },
}
# BPE entries before the control and semantic tokens, so that the vocabulary (and so the output
# head) has its real size: S1-mini stand-in 155,754 ids; s2-pro 155,786 against the real 155,776
# (the source's control tokens differ in number). The kit's short texts use few of them.
IDS_BEFORE_CONTROL = {"s1-mini": QWEN_BPE_TOKENS, "s2-pro": S2_IDS_BEFORE_SEMANTIC}


def main(dest: str, generation: str, shape: str, codec_config_name: str) -> None:
    if shape not in IDS_BEFORE_CONTROL:  # a test size: the builder's own
        builder.main(dest, generation, shape, codec_config_name)
        return
    # Real-size weights in bf16 (the servers' precision): half the bytes and build time.
    torch.set_default_dtype(torch.bfloat16)
    builder.build(
        Path(dest),
        generation,
        REAL_SHAPES[generation][shape],
        codec_config_name,
        bpe_entries=IDS_BEFORE_CONTROL[shape],
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
