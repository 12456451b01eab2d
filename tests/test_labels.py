import json

import pytest

from deepspeech_pytorch.labels import Alphabet, TranscriptError


def test_normalize_folds_case_quotes_dashes_and_punctuation():
    assert Alphabet().normalize("  Don’t STOP—it's well-known, OK?! ") == "don't stop it's well known ok"


def test_out_of_alphabet_dropped_with_warning_naming_utterance(caplog):
    with caplog.at_level("WARNING"):
        assert Alphabet().normalize("room 101 ok", utterance="a.wav") == "room ok"
    assert "a.wav" in caplog.text and "01" in caplog.text


def test_out_of_alphabet_error_policy():
    with pytest.raises(TranscriptError, match="b.wav"):
        Alphabet(oov_policy="error").normalize("café 2", utterance="b.wav")


def test_accents_fold_to_letters_in_the_alphabet():
    assert Alphabet(oov_policy="error").normalize("Café naïve Ångström") == "cafe naive angstrom"


def test_encode_decode_round_trip():
    alphabet = Alphabet()
    ids = alphabet.encode("it's a test")
    assert 0 not in ids and alphabet.decode(ids) == "it's a test"
    assert alphabet.labels[0] == "_" and len(alphabet) == 29


def test_json_alphabet_for_another_language(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(["_", "a", "ä", "ö", "ü", "ß", " "]))
    alphabet = Alphabet.from_json(str(path))
    assert alphabet.normalize("Äß ü") == "äß ü"
    alphabet.to_json(str(tmp_path / "copy.json"))
    assert json.loads((tmp_path / "copy.json").read_text()) == list(alphabet.labels)


def test_original_uppercase_labels_normalise_to_uppercase():
    alphabet = Alphabet(labels=tuple(["_", "'", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", " "]))
    assert alphabet.normalize("hello there") == "HELLO THERE"


@pytest.mark.parametrize("labels", [("a", "b"), ("_", "a", "a"), ("_", "ab")])
def test_invalid_alphabets(labels):
    with pytest.raises(ValueError):
        Alphabet(labels=labels)


def test_labels_file_faults_name_the_file(tmp_path):
    """A missing, non-JSON or non-UTF-8 labels file was a bare OSError / JSON / codec error."""
    with pytest.raises(ValueError, match=f"^{tmp_path / 'none.json'}: labels file not found$"):
        Alphabet.from_json(str(tmp_path / "none.json"))
    with pytest.raises(ValueError, match=f"^{tmp_path}: is a folder, not a labels file$"):
        Alphabet.from_json(str(tmp_path))
    (tmp_path / "text.json").write_text("_ a b c\n")
    with pytest.raises(ValueError, match=r"text.json: labels file is not JSON \(.*line 1\); expected a JSON list"):
        Alphabet.from_json(str(tmp_path / "text.json"))
    (tmp_path / "latin.json").write_bytes('["_", "\xe9"]'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin.json: labels file is not UTF-8 text"):
        Alphabet.from_json(str(tmp_path / "latin.json"))
