"""Tiny random-weight models for the WebUI-runner tests, built and saved by transformers' own classes.

``python webui_tiny_models.py STAGE`` (the WebUI's main environment's Python; transformers is never imported in
the test process) writes, each into a folder of ``STAGE`` that ``webui_runner_tree`` puts into the hub cache:

* ``mms``: a random VITS and its character tokenizer: what the MMS extension's loader reads as
  ``facebook/mms-tts-eng`` (``VitsModel``/``VitsTokenizer.from_pretrained``);
* ``seamless``: a random SeamlessM4Tv2 (one layer per block, width 16) with its processor (a character
  tokenizer holding the language tokens, a feature extractor) and the generation config its ``generate`` reads
  (language-code maps, ``id_to_text``, ``char_to_id``): what the Seamless M4T extension's loader reads as
  ``facebook/seamless-m4t-v2-large`` (``SeamlessM4Tv2Model``/``AutoProcessor.from_pretrained``).

Seeded: the same files on every run. Runs in its own process.
"""

import json
import sys
from pathlib import Path

import torch
from transformers import (
    GenerationConfig,
    SeamlessM4TFeatureExtractor,
    SeamlessM4TProcessor,
    SeamlessM4TTokenizer,
    SeamlessM4Tv2Config,
    SeamlessM4Tv2Model,
    VitsConfig,
    VitsModel,
    VitsTokenizer,
)

MMS_VOCAB = ["<pad>", " ", "'", "-", *"abcdefghijklmnopqrstuvwxyz"]  # the real English one: these and a few more
SEAMLESS_LANGS = ["eng", "cmn", "fra", "deu", "spa"]  # the target languages the tests pick ("Mandarin Chinese", ...)


def write_mms(out: Path) -> None:
    torch.manual_seed(0)
    config = VitsConfig(
        vocab_size=len(MMS_VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32,
        flow_size=16, spectrogram_bins=33, upsample_initial_channel=16, upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        posterior_encoder_num_wavenet_layers=1, prior_encoder_num_flows=1, prior_encoder_num_wavenet_layers=1,
        duration_predictor_num_flows=1, duration_predictor_filter_channels=16, depth_separable_num_layers=1,
        sampling_rate=16000)
    VitsModel(config).save_pretrained(out)
    vocab = out / "vocab.json"
    vocab.write_text(json.dumps({c: i for i, c in enumerate(MMS_VOCAB)}))
    VitsTokenizer(str(vocab), language="eng", add_blank=True, normalize=True, phonemize=False).save_pretrained(out)


def write_seamless(out: Path) -> None:
    torch.manual_seed(0)
    chars = ["▁", *"abcdefghijklmnopqrstuvwxyz", *".,!?'"]
    lang_tokens = [f"__{lang}__" for lang in SEAMLESS_LANGS]
    vocab = {token: i for i, token in enumerate(["<pad>", "<unk>", "<s>", "</s>", *chars, *lang_tokens])}
    tokenizer = SeamlessM4TTokenizer(vocab=vocab, merges=[], src_lang="eng", tgt_lang="cmn",
                                     additional_special_tokens=lang_tokens)
    features = SeamlessM4TFeatureExtractor(feature_size=80, num_mel_bins=80, sampling_rate=16000, stride=2)
    width = 16
    config = SeamlessM4Tv2Config(
        vocab_size=64, t2u_vocab_size=32, char_vocab_size=40, hidden_size=width, max_position_embeddings=64,
        encoder_layers=1, decoder_layers=1, encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
        decoder_attention_heads=2, speech_encoder_layers=1, speech_encoder_attention_heads=2,
        speech_encoder_intermediate_size=32, feature_projection_input_dim=160, num_adapter_layers=1,
        adaptor_kernel_size=2, adaptor_stride=2, conv_depthwise_kernel_size=3, left_max_position_embeddings=8,
        right_max_position_embeddings=4, t2u_encoder_layers=1, t2u_decoder_layers=1, t2u_encoder_ffn_dim=32,
        t2u_decoder_ffn_dim=32, t2u_encoder_attention_heads=2, t2u_decoder_attention_heads=2,
        t2u_max_position_embeddings=256, t2u_variance_predictor_embed_dim=width,
        t2u_variance_predictor_hidden_dim=16, upsample_initial_channel=16, upsample_rates=[4, 4],
        upsample_kernel_sizes=[8, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
        unit_hifi_gan_vocab_size=28, unit_embed_dim=8, lang_embed_dim=4, spkr_embed_dim=4,
        vocoder_num_langs=len(SEAMLESS_LANGS), vocoder_num_spkrs=2, variance_predictor_kernel_size=3,
        max_new_tokens=12, sampling_rate=16000)
    model = SeamlessM4Tv2Model(config).eval()
    generation = GenerationConfig.from_model_config(config)
    generation._from_model_config = False  # else from_pretrained rebuilds it from config.json, without the maps
    generation.max_new_tokens = 12
    generation.text_decoder_lang_to_code_id = {lang: vocab[f"__{lang}__"] for lang in SEAMLESS_LANGS}
    generation.t2u_lang_code_to_id = {lang: 5 + i for i, lang in enumerate(SEAMLESS_LANGS)}
    generation.vocoder_lang_code_to_id = {lang: i for i, lang in enumerate(SEAMLESS_LANGS)}
    generation.id_to_text = {str(i): token for token, i in vocab.items()}
    generation.char_to_id = {c: i for i, c in enumerate(["<pad>", "<unk>", "<s>", "</s>", *chars])}
    model.generation_config = generation
    model.save_pretrained(out)
    SeamlessM4TProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out)


if __name__ == "__main__":
    stage = Path(sys.argv[1])
    write_mms(stage / "mms")
    write_seamless(stage / "seamless")
