"""LM text gathering (data/lm_text.py) on a small fixture in the Debian packages' real layout, and the lexicon
that keeps the training words (data/build_lm.py --keep-words) built with the real KenLM tools."""

import gzip
import json
import os
import subprocess
import sys

import pytest

from deepspeech_pytorch import lm
from deepspeech_pytorch.corpora import lm_text
from deepspeech_pytorch.labels import Alphabet
from test_lm import heard_log_probs  # (time, classes) of a model that hears one letter wrong

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "data", "lm_text.py")
ALPHABET = Alphabet()

FORTUNES = """Mr. Smith paid $5 for 3 apples in 1984.
%
Yes.
%
The church is all boarded up, it must have been abandoned several years ago, said the priest.
        -- Anonymous
%
Be the 1st to arrive at <location> today.
%
'Hello,' said the vampires' aunt.
"""

# data.noun lines: offset, lex file, type, word count, words, pointers, then "| gloss; "examples""
WORDNET_NOUN = """  1 This software and database is being provided to you, the LICENSEE, by Princeton University
02958343 06 n 05 car 0 auto 0 automobile 0 machine 0 motorcar 0 000 | a motor vehicle with four wheels; usually propelled by an internal combustion engine; "he needs a car to get to work"
"""

GCIDE = """00-database-info
This file was converted from the original database on:
          2011-01-16T06:18:43
   [1913 Webster]

Abjure \\Ab*jure"\\, v. t. [imp. & p. p. {Abjured}.] [L.
   abjurare to deny upon oath.]
   2. To renounce or reject with solemnity; to recant; to
      abandon forever.
      [1913 Webster]

            Magic I here abjure. --Shak.
      [1913 Webster]
"""

DEVIL = """00-database-short
     The Devil's Dictionary (1881-1906)
The original data was distributed with the notice shown below.

                              PREFACE

_The Devil's Dictionary_ was begun in a weekly paper in 1881.

ABSURDITY, n.  A statement or belief manifestly inconsistent with
one's own opinion.

ACCORD, n.  Harmony.
"""

ENDLESS_SKY = """# Copyright (c) 2014 by Michael Zahniser
mission "Pact Recon 0"
	description "Fly through the Alniyat system, then report to <destination>."
	on offer
		conversation
			`You can't help noticing that the freighter is in very bad shape.`
			choice
				`	"Is there something I can do to help?"`
"""

CATACLYSM = [{"type": "talk_topic", "id": "TALK_COP",
              "dynamic_line": "I was watching the station when things went sideways.",
              "responses": [{"text": "What are you doing here?", "topic": "TALK_DONE"},
                            {"text": {"str": "Got any food?"}, "topic": "TALK_DONE"}]}]

FREEDROID_DIALOG = r"""local Npc = FDrpg.get_npc()
return {
	FirstTime = function()
		Npc:says(_"I am ready. Open the tunnels for me, Dixon.")
		Tux:says(_"You Linarians see the world similar to the [b]HUD[/b], used in \"games\".")
	end,
	{
		id = "node0",
		text = _"Welcome to %s!",
	},
}
"""

KJV_OUTPUT = """Ge1:1 In the beginning God created the heaven and the earth.
Ge1:2 And the earth was without form, and void.
"""

WEB_IMP = """$$$[ Module Heading ]

$$$Genesis 0:0
<div sID="gen2" type="front"/> <title level="1" type="main">Preface to the World English Bible</title> The Holy Bible is a collection of books.
$$$Genesis 1:0
<chapter n="1" osisID="Gen.1" sID="Gen.1"/>
$$$Genesis 1:1
<w lemma="strong:H0430">In</w> <w lemma="strong:H0853">the</w> <w lemma="strong:H7225">beginning</w>, <w lemma="strong:H0430">God</w><note placement="foot"><reference type="annotateRef">1:1 </reference>The Hebrew word rendered \u201cGod\u201d is \u201cElohim\u201d.</note> <w lemma="strong:H1254">created</w> the earth.
$$$Genesis 1:3
<w>God</w> <w>said</w>, \u201c<w>Let</w> <w>there</w> <w>be</w> <w>light</w>,\u201d and there was light.
"""


def write_debian_fixture(root):
    """The files of fortunes, wordnet-base, dict-gcide, dict-devil, endless-sky-data and cataclysm-dda-data,
    where those packages install them."""
    fortunes = root / lm_text.FORTUNE_DIR
    fortunes.mkdir(parents=True)
    (fortunes / "fortunes").write_text(FORTUNES, encoding="utf-8")
    (fortunes / "fortunes.dat").write_bytes(b"\x00\x00\x00\x02binary index")
    wordnet = root / lm_text.WORDNET_DIR
    wordnet.mkdir(parents=True)
    (wordnet / "data.noun").write_text(WORDNET_NOUN, encoding="utf-8")
    dictd = root / os.path.dirname(lm_text.GCIDE_FILE)
    dictd.mkdir(parents=True)
    with gzip.open(root / lm_text.GCIDE_FILE, "wt", encoding="utf-8") as handle:
        handle.write(GCIDE)
    with gzip.open(root / lm_text.DEVIL_FILE, "wt", encoding="utf-8") as handle:
        handle.write(DEVIL)
    sky = root / lm_text.ENDLESS_SKY_DIR
    sky.mkdir(parents=True)
    (sky / "free worlds intro.txt").write_text(ENDLESS_SKY, encoding="utf-8")
    npcs = root / lm_text.CATACLYSM_NPC_DIR / "robofac"
    npcs.mkdir(parents=True)
    (npcs / "TALK_COP.json").write_text(json.dumps(CATACLYSM), encoding="utf-8")
    dialogs = root / lm_text.FREEDROID_DIR / "storyline" / "act1" / "dialogs"
    dialogs.mkdir(parents=True)
    (dialogs / "Dixon.lua").write_text(FREEDROID_DIALOG, encoding="utf-8")
    (root / lm_text.FREEDROID_DIR / "storyline" / "act1" / "events.lua").write_text('x = _"Not a dialog."')


def write_manifest(path, texts):
    path.write_text("".join(json.dumps({"audio_filepath": f"{i}.wav", "text": text, "duration": 1.0}) + "\n"
                            for i, text in enumerate(texts)), encoding="utf-8")
    return str(path)


FIXTURE_SOURCES = ("fortunes", "wordnet-examples", "wordnet-glosses", "gcide-quotations", "gcide-definitions",
                   "devil", "endless-sky", "cataclysm", "freedroidrpg")


@pytest.fixture
def debian_root(tmp_path):
    root = tmp_path / "root"
    write_debian_fixture(root)
    return root


# ---- normalisation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("number, words", [
    (0, "zero"), (13, "thirteen"), (40, "forty"), (101, "one hundred one"),
    (2500, "two thousand five hundred"), (1000000, "one million"), (7019, "seven thousand nineteen")])
def test_cardinals(number, words):
    assert lm_text.spell_cardinal(number) == words


def test_ordinals_years_money_and_percent_are_spoken():
    assert [lm_text.spell_ordinal(n) for n in (1, 2, 3, 12, 21, 40, 100)] == \
        ["first", "second", "third", "twelfth", "twenty first", "fortieth", "one hundredth"]
    assert [lm_text.spell_year(y) for y in (1984, 1900, 1905, 2005, 2019)] == \
        ["nineteen eighty four", "nineteen hundred", "nineteen oh five", "two thousand five", "twenty nineteen"]
    assert lm_text.spell_numbers("Room 101, 3rd floor, $5.50 or 20% off, 1,200 men in 1066; 3.14; 007") == \
        ("Room one hundred one, third floor, five dollars fifty cents or twenty percent off, one thousand two "
         "hundred men in ten sixty six; three point one four; zero zero seven")


def test_sentences_are_cut_titles_expanded_and_odd_characters_drop_the_sentence():
    assert lm_text.split_sentences("Mr. Smith met Dr. Jones. \"Hi!\" he said.\nThen they left?") == \
        ["mister Smith met doctor Jones.", "\"Hi!", "he said.", "Then they left?"]  # closing quotes go with the cut
    assert lm_text.normalize_text("\u201cDon\u2019t go,\u201d said the Fr\u00e8re\u2014twice.", ALPHABET) == \
        "don't go said the frere twice"
    assert lm_text.normalize_text("'Hello,' said the vampires' aunt.", ALPHABET) == "hello said the vampires' aunt"
    assert lm_text.normalize_text("Report to <destination> at once.", ALPHABET) is None  # a placeholder
    assert lm_text.normalize_text("It costs 5\u20ac.", ALPHABET) is None  # euro sign: nothing edited away
    assert lm_text.normalize_text("...", ALPHABET) is None


# ---- sources in their real formats -----------------------------------------------------------------

def test_each_source_reads_its_package_files(debian_root):
    root = str(debian_root)
    cookies = list(lm_text.read_fortunes(root))
    assert len(cookies) == 5 and "Anonymous" not in cookies[2] and "binary" not in " ".join(cookies)
    assert list(lm_text.read_wordnet_examples(root)) == ["he needs a car to get to work"]
    assert list(lm_text.read_wordnet_glosses(root)) == \
        ["a motor vehicle with four wheels", "usually propelled by an internal combustion engine"]
    assert list(lm_text.read_gcide_quotations(root)) == ["Magic I here abjure."]
    definitions = list(lm_text.read_gcide_definitions(root))
    assert any("To renounce or reject with solemnity" in text for text in definitions)
    assert not any("1913" in text or "abjurare" in text for text in definitions)
    assert list(lm_text.read_devil(root)) == \
        ["A statement or belief manifestly inconsistent with one's own opinion.", "Harmony."]
    sky = list(lm_text.read_endless_sky(root))
    assert "You can't help noticing that the freighter is in very bad shape." in sky
    assert any("Is there something I can do to help?" in text for text in sky)
    assert not any("Copyright" in text for text in sky)
    assert sorted(lm_text.read_cataclysm(root)) == \
        ["Got any food?", "I was watching the station when things went sideways.", "What are you doing here?"]
    assert list(lm_text.read_freedroid(root)) == [
        "I am ready. Open the tunnels for me, Dixon.",
        'You Linarians see the world similar to the HUD, used in "games".', "Welcome to %s!"]


def test_bible_outputs_are_parsed():
    assert list(lm_text.parse_bible_kjv(KJV_OUTPUT)) == \
        ["In the beginning God created the heaven and the earth.", "And the earth was without form, and void."]
    verses = list(lm_text.parse_sword_imp(WEB_IMP))
    assert verses == ["In the beginning, God created the earth.",
                      "God said, \u201cLet there be light,\u201d and there was light."]  # no preface, no footnote


def test_a_missing_package_is_named_with_its_install_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in FIXTURE_SOURCES:
        with pytest.raises(lm_text.TextUnavailable, match=f"apt-get install {' '.join(lm_text.SOURCES[name].packages)}"):
            lm_text.build_lm_text(str(tmp_path / "out" / "corpus.txt"), [name], root=str(empty))
    assert not (tmp_path / "out" / "corpus.txt").exists()
    result = subprocess.run([sys.executable, SCRIPT, "--output", str(tmp_path / "out" / "c.txt"), "--root", str(empty),
                             "--sources", "devil", "--quiet"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: text source devil: {empty / lm_text.DEVIL_FILE} not found; install it with: apt-get install dict-devil"]
    with pytest.raises(ValueError, match="unknown text source"):
        lm_text.build_lm_text(str(tmp_path / "c.txt"), ["gutenberg"], root=str(empty))


# ---- the corpus ------------------------------------------------------------------------------------

EVALUATION = ["the church is all boarded up it must have been abandoned several years ago",  # inside a fortune
              "yes",  # a fortune equal to it
              "what are you doing here",  # a dialogue line equal to it
              "hi"]  # short: equality only


def test_corpus_keeps_no_evaluation_sentence_and_lists_training_words(debian_root, tmp_path):
    train = write_manifest(tmp_path / "queen_train.jsonl", ["you couldn't pilot your way out of a paper bag",
                                                           "yes", "hi there", "hi there"])
    pool = tmp_path / "train_text.txt"
    pool.write_text("he needs a car to get to work\nthe zeppelin landed\n", encoding="utf-8")
    evaluation = write_manifest(tmp_path / "val.jsonl", EVALUATION)
    output = tmp_path / "lm" / "corpus.txt"
    result = lm_text.build_lm_text(str(output), FIXTURE_SOURCES, root=str(debian_root), transcripts=[train],
                                   texts=[str(pool)], exclude=[evaluation],
                                   exclude_lines=["i was watching the station when things went sideways"])
    lines = output.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "mister smith paid five dollars for three apples in nineteen eighty four"
    assert "said the vampires' aunt" in " ".join(lines)
    assert "you linarians see the world similar to the hud used in games" in lines
    assert len(lines) == len(set(lines)) == result.sentences
    assert "he needs a car to get to work" in lines and "the zeppelin landed" in lines
    assert "hi there" in lines and "you couldn't pilot your way out of a paper bag" in lines
    assert not any("<" in line or "location" in line for line in lines)  # the placeholder cookie is dropped
    # the overlap check: no line equals an excluded line, none contains one of four words or more
    excluded = EVALUATION + ["i was watching the station when things went sideways"]
    for line in lines:
        assert line not in excluded
        assert not any(f" {text} " in f" {line} " for text in excluded if len(text.split()) >= 4), line
    assert any(" hi " in f" {line} " for line in lines)  # "hi" is only removed when it is the whole sentence
    counts = result.sources
    assert counts["fortunes"].excluded == {"equal": 1, "contains": 1}
    assert counts["cataclysm"].excluded == {"equal": 2, "contains": 0}
    assert counts["transcripts:queen_train.jsonl"].duplicates == 1
    assert counts["transcripts:queen_train.jsonl"].excluded["equal"] == 1
    assert counts["fortunes"].dropped == 1
    training = open(result.training_words, encoding="utf-8").read().split()
    assert "zeppelin" in training and "pilot" in training and "yes" not in training  # excluded lines teach no word
    summary = json.load(open(result.summary, encoding="utf-8"))
    assert summary["sentences"] == len(lines) and summary["sources"]["devil"]["sentences"] == 2


def test_script_writes_the_corpus(debian_root, tmp_path):
    evaluation = write_manifest(tmp_path / "test.jsonl", ["magic i here abjure"])
    result = subprocess.run([sys.executable, SCRIPT, "--output", str(tmp_path / "out" / "corpus.txt"),
                             "--root", str(debian_root), "--sources", "devil", "gcide-quotations", "fortunes",
                             "--exclude", evaluation, "--quiet"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "out" / "corpus.txt").read_text().splitlines()
    assert "harmony" in lines and "magic i here abjure" not in lines
    assert f"corpus: {tmp_path / 'out' / 'corpus.txt'}" in result.stdout
    listed = subprocess.run([sys.executable, SCRIPT, "--list-sources"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "bible-web\tsword-text-web libsword-utils" in listed.stdout


# ---- the lexicon keeps the training words ------------------------------------------------------------

def test_keep_words_survive_the_vocabulary_limit(tmp_path):
    try:
        lm.find_kenlm_binary("lmplz")
    except lm.KenLMMissing as error:
        pytest.fail(f"{error} (CI builds KenLM before the tests)")
    text = tmp_path / "corpus.txt"
    text.write_text("the cat sat\nthe cat ran\nthe dog sat\nthe zebu sat\n" * 3, encoding="utf-8")
    keep = tmp_path / "training_words.txt"
    keep.write_text("zebu\nunicorn\n", encoding="utf-8")  # "unicorn" is not in the text: no use to the LM
    assert lm.vocabulary(lm.collections.Counter("the cat sat the zebu".split()), 2, ["zebu", "unicorn"]) == \
        ["the", "cat", "zebu"]
    result = subprocess.run([sys.executable, os.path.join(ROOT, "data", "build_lm.py"), "--text", str(text),
                             "--output-dir", str(tmp_path / "lm"), "--order", "2", "--max-words", "3",
                             "--keep-words", str(keep), "--memory", "64M"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    words = [line.split("\t")[0] for line in open(summary["lexicon"], encoding="utf-8")]
    assert words == ["the", "sat", "cat", "zebu"]
    assert "\tzebu\t" in open(summary["arpa"]).read() and "\tdog\t" not in open(summary["arpa"]).read()
    missing = subprocess.run([sys.executable, os.path.join(ROOT, "data", "build_lm.py"), "--text", str(text),
                              "--output-dir", str(tmp_path / "x"), "--keep-words", str(tmp_path / "none.txt")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "none.txt" in missing.stderr and "Traceback" not in missing.stderr


# ---- benchmarks/lm_compare.py ----------------------------------------------------------------------------

SENTENCES = ["the cat sat on the mat", "the dog ate a bone", "a red hat", "an ice cream cone"]
HEARD = ["the cat sat on the hat", "the dog ate a cone", "a red mat", "an ice cream bone"]  # one letter wrong each


def test_lm_compare_tunes_on_val_and_scores_test(tmp_path):
    import torch

    try:
        lm.find_kenlm_binary("lmplz")
    except lm.KenLMMissing as error:
        pytest.fail(f"{error} (CI builds KenLM before the tests)")
    outputs = {}
    for split, pairs in (("val", list(zip(SENTENCES[:2], HEARD[:2]))), ("test", list(zip(SENTENCES[2:], HEARD[2:])))):
        utterances = [{"log_probs": heard_log_probs(r, h), "reference": r, "audio_filepath": f"{i}.wav"}
                      for i, (r, h) in enumerate(pairs)]
        outputs[split] = tmp_path / f"{split}.pt"
        torch.save({"labels": list(ALPHABET.labels), "seconds_per_frame": 0.02, "utterances": utterances},
                   outputs[split])
    good_text = tmp_path / "good.txt"
    good_text.write_text("\n".join(SENTENCES * 3) + "\n")
    poor_text = tmp_path / "poor.txt"  # every word, none in the right company
    poor_text.write_text("the hat ate a mat\nthe cone sat on the bone\na red cat\nan ice cream dog\n" * 3)
    good = lm.build_language_model([str(good_text)], str(tmp_path / "good"), order=3, memory="64M")
    poor = lm.build_language_model([str(poor_text)], str(tmp_path / "poor"), order=3, memory="64M")
    bundle = tmp_path / "bundle.lm.json"  # the bundle's format, names relative to its folder
    bundle.write_text(json.dumps({"path": os.path.relpath(poor.arpa, tmp_path),
                                  "lexicon_path": os.path.relpath(poor.lexicon, tmp_path),
                                  "alpha": 0.5, "beta": 0.0, "beam_size": 50}))
    results = tmp_path / "compare.json"
    result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "lm_compare.py"),
                             "--split", f"toy={outputs['val']},{outputs['test']}",
                             "--lm", f"good={good.path},{good.lexicon}", "--lm", f"poor={bundle}",
                             "--alpha", "0", "2", "3", "--beta", "0", "1", "2", "--beam-size", "50", "--workers", "1",
                             "--results", str(results)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = {row["lm"]: row for row in json.load(open(results))["rows"]}
    assert rows["greedy"]["test_wer"] == pytest.approx(2 / 7)  # "a red mat", "an ice cream bone"
    assert rows["good"]["val_wer"] == 0 and rows["good"]["test_wer"] == 0 and rows["good"]["alpha"] > 0
    assert rows["good"]["test_oov"] == 0 and rows["good"]["test_perplexity"] < rows["poor"]["test_perplexity"]
    assert rows["poor"]["fixed_alpha"] == 0.5 and "fixed_test_wer" in rows["poor"]
    assert len(rows["good"]["grid"]) == 6
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| split | LM |") and len(lines) == 2 + 3
    assert lines[3].startswith("| toy | good |") and "0.0% (0.0%)" in lines[3]
    missing = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "lm_compare.py"),
                              "--split", f"toy={tmp_path / 'none.pt'},{outputs['test']}", "--lm", f"poor={bundle}"],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "none.pt" in missing.stderr and "Traceback" not in missing.stderr
