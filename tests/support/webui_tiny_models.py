"""Tiny random-weight models for the WebUI-runner tests, built and saved by transformers' own classes.

``python webui_tiny_models.py STAGE [NAME ...]`` (a WebUI environment's Python; transformers is never imported in
the test process) writes the models named (default ``mms seamless``), each into a folder of ``STAGE`` that
``webui_runner_tree`` puts into the hub cache:

* ``mms``: a random VITS and its character tokenizer: what the MMS extension's loader reads as
  ``facebook/mms-tts-eng`` (``VitsModel``/``VitsTokenizer.from_pretrained``);
* ``seamless``: a random SeamlessM4Tv2 (one layer per block, width 16) with its processor (a character
  tokenizer holding the language tokens, a feature extractor) and the generation config its ``generate`` reads
  (language-code maps, ``id_to_text``, ``char_to_id``): what the Seamless M4T extension's loader reads as
  ``facebook/seamless-m4t-v2-large`` (``SeamlessM4Tv2Model``/``AutoProcessor.from_pretrained``);
* ``kokoro`` (with Kokoro's environment's Python): ``config.json``, ``kokoro-v1_0.pth`` and a voice pack, as
  ``hexgrad/Kokoro-82M`` holds them (``KModel``'s loader, ``KPipeline.load_voice``). Kokoro's decoder, prosody
  predictor and text encoder have fixed widths (58M parameters): the file holds only the shrunk ALBERT and its
  projection, and ``KModel`` keeps its own initialisation for the rest (drawn under the call's seed, as the
  extension loads inside the call).

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


KOKORO_VOICE = "ef_dora"  # a Spanish voice: espeak-ng's G2P (the English ones need spaCy's model, a download)


def write_kokoro(out: Path) -> None:
    from kokoro import KModel

    torch.manual_seed(0)
    out.mkdir(parents=True, exist_ok=True)
    symbols = [*";:,.!?¡¿—…\"«»“” ", *"abcdefghijklmnopqrstuvwxyz",
               *"ɑɐɒæɓʙβɔɕçɗɖðʤəɘɚɛɜɝɞɟʄɡɠɢʛɦɧħɥʜɨɪʝɭɬɫɮʟɱɯɰŋɳɲɴøɵɸθœɶʘɹɺɾɻʀʁɽʂʃʈʧʉʊʋⱱʌɣɤʍχʎʏʑʐʒʔʡʕʢ",
               *"ǀǁǂǃˈˌːˑʼʴʰʱʲʷˠˤ˞↓↑→↗↘̩ᵻ"]  # the IPA marks espeak-ng and misaki give, ids 1..177 (0: KModel's pad)
    config = {
        "vocab": {c: i + 1 for i, c in enumerate(dict.fromkeys(symbols))}, "n_token": 178, "hidden_dim": 512,
        "style_dim": 128, "n_layer": 1, "max_dur": 2, "dropout": 0.2, "n_mels": 80, "text_encoder_kernel_size": 5,
        "dim_in": 64, "max_conv_dim": 512, "multispeaker": True,
        "plbert": {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64,
                   "max_position_embeddings": 512, "num_hidden_layers": 1, "dropout": 0.1},
        "istftnet": {"upsample_kernel_sizes": [20, 12], "upsample_rates": [10, 6], "gen_istft_hop_size": 5,
                     "gen_istft_n_fft": 20, "resblock_dilation_sizes": [[1, 3, 5]], "resblock_kernel_sizes": [3],
                     "upsample_initial_channel": 512},
    }
    (out / "config.json").write_text(json.dumps(config, ensure_ascii=False))
    empty = out / "empty.pth"
    torch.save({}, empty)
    model = KModel(repo_id="hexgrad/Kokoro-82M", config=str(out / "config.json"), model=str(empty))
    empty.unlink()
    torch.save({part: getattr(model, part).state_dict() for part in ("bert", "bert_encoder")}, out / "kokoro-v1_0.pth")
    (out / "voices").mkdir()
    torch.save(torch.randn(510, 1, 256) * 0.1, out / "voices" / f"{KOKORO_VOICE}.pt")  # a style vector per length


if __name__ == "__main__":
    stage = Path(sys.argv[1])
    for name in sys.argv[2:] or ["mms", "seamless"]:
        {"mms": write_mms, "seamless": write_seamless, "kokoro": write_kokoro}[name](stage / name)
