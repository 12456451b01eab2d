"""Corpus preparation end to end: tiny archives in each corpus's real layout, served over HTTP on 127.0.0.1.

Every test builds its archive from generated tones (FLAC, NIST SPHERE, MP3 or WAV as the corpus ships
them), serves it from a local `http.server` that honours Range requests and records what it was asked,
runs the real script or download path, and checks the manifests and WAV files it produced.
"""

import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import urllib.parse
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf

from deepspeech_pytorch.corpora import CorpusError
from deepspeech_pytorch.corpora.archive import ArchiveError, UnsafeArchiveError, extract, fetch_and_extract
from deepspeech_pytorch.corpora.download import (Checksum, ChecksumError, DownloadError, download,
                                                 parse_checksum_listing)
from deepspeech_pytorch.corpora.ted import clean_transcript
from deepspeech_pytorch.datasets import read_manifest
from conftest import load_script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- helpers

class CorpusServer:
    """Serves a folder over HTTP with Range support; records (path, Range header) of every request.

    `truncate_once` holds paths whose next response is cut off half way (an interrupted transfer);
    `ignore_range` makes it answer every request from byte 0, as some servers do.
    """

    def __init__(self, root):
        self.root = str(root)
        self.requests = []
        self.truncate_once = set()
        self.ignore_range = False
        corpus = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
                corpus.requests.append((path, self.headers.get("Range")))
                local = os.path.join(corpus.root, path.lstrip("/"))
                if os.path.isdir(local):
                    local = os.path.join(local, "index.html")
                if not os.path.isfile(local):
                    self.send_error(404)
                    return
                with open(local, "rb") as handle:
                    data = handle.read()
                start = 0
                requested = self.headers.get("Range")
                if requested and not corpus.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", requested).group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if path in corpus.truncate_once:
                    corpus.truncate_once.discard(path)
                    body = body[: len(body) // 2]
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def paths(self):
        return [path for path, _ in self.requests]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(root=None):
        root = root or tmp_path / "www"
        os.makedirs(root, exist_ok=True)
        servers.append(CorpusServer(root))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def tone(seconds, freq=440.0, rate=16000, seed=0):
    """A sine with a little noise, float32 in [-1, 1]."""
    t = np.arange(int(round(seconds * rate))) / rate
    noise = np.random.default_rng(seed).normal(0, 0.01, t.shape)
    return (0.4 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def dominant_frequency(samples, rate=16000):
    spectrum = np.abs(np.fft.rfft(samples))
    return np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))]


def make_tar(path, folder, arcname):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname=arcname)
    return path


def md5(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()



def read_jsonl(path):
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def check_wav(manifest_path, record, expected_duration=None, tolerance=0.02):
    """The entry's file is a 16 kHz mono 16-bit WAV whose length matches the manifest."""
    audio = os.path.join(os.path.dirname(manifest_path), record["audio_filepath"])
    info = sf.info(audio)
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", 16000, 1), audio
    assert record["duration"] == pytest.approx(info.frames / 16000, abs=1e-3)
    if expected_duration is not None:
        assert record["duration"] == pytest.approx(expected_duration, abs=tolerance)
    return audio


# ---------------------------------------------------------------- download and extraction

def test_checksum_parsing_and_listing():
    assert Checksum.parse("d41d8cd98f00b204e9800998ecf8427e").algorithm == "md5"
    assert Checksum.parse("SHA256:" + "A" * 64) == Checksum("sha256", "a" * 64)
    with pytest.raises(ValueError):
        Checksum.parse("abc123")
    listing = parse_checksum_listing("42e2234ba48799c1f50f24a7926300a1  dev-clean.tar.gz\n"
                                     "32fa31d27d2e1cad72775fee3f4849a9 *test-clean.tar.gz\n")
    assert listing["dev-clean.tar.gz"] == Checksum("md5", "42e2234ba48799c1f50f24a7926300a1")
    assert listing["test-clean.tar.gz"].digest == "32fa31d27d2e1cad72775fee3f4849a9"
    with pytest.raises(CorpusError, match="line 1"):
        parse_checksum_listing("not-a-listing-line\n")


def test_interrupted_transfer_resumes_with_a_range_request(tmp_path, serve):
    server = serve()
    payload = os.urandom(300_000)
    (tmp_path / "www" / "blob.bin").write_bytes(payload)
    server.truncate_once.add("/blob.bin")
    target = tmp_path / "out" / "blob.bin"
    checksum = Checksum("sha256", hashlib.sha256(payload).hexdigest())
    download(f"{server.url}/blob.bin", str(target), checksum, retry_wait=0, progress=False)
    assert target.read_bytes() == payload
    assert not os.path.exists(f"{target}.part")
    assert server.requests[0] == ("/blob.bin", None)
    assert server.requests[1] == ("/blob.bin", f"bytes={len(payload) // 2}-")
    # A final file that verifies is not fetched again.
    download(f"{server.url}/blob.bin", str(target), checksum, progress=False)
    assert len(server.requests) == 2


def test_download_restarts_when_the_server_ignores_range(tmp_path, serve):
    server = serve()
    payload = os.urandom(50_000)
    (tmp_path / "www" / "blob.bin").write_bytes(payload)
    server.ignore_range = True
    target = tmp_path / "blob.bin"
    (tmp_path / "blob.bin.part").write_bytes(b"stale bytes from another file")
    download(f"{server.url}/blob.bin", str(target), Checksum("md5", hashlib.md5(payload).hexdigest()), progress=False)
    assert target.read_bytes() == payload


def test_complete_part_file_is_finished_without_refetching(tmp_path, serve):
    server = serve()
    payload = os.urandom(20_000)
    (tmp_path / "www" / "blob.bin").write_bytes(payload)
    (tmp_path / "blob.bin.part").write_bytes(payload)
    download(f"{server.url}/blob.bin", str(tmp_path / "blob.bin"), progress=False)
    assert server.requests == [("/blob.bin", f"bytes={len(payload)}-")]  # answered 416: nothing left to fetch
    assert (tmp_path / "blob.bin").read_bytes() == payload


def test_wrong_checksum_and_missing_file_fail_naming_them(tmp_path, serve):
    server = serve()
    (tmp_path / "www" / "blob.bin").write_bytes(b"x" * 1000)
    target = tmp_path / "blob.bin"
    with pytest.raises(ChecksumError, match=r"blob\.bin: md5 checksum mismatch"):
        download(f"{server.url}/blob.bin", str(target), Checksum("md5", "0" * 32), progress=False)
    assert not target.exists() and not (tmp_path / "blob.bin.part").exists()
    with pytest.raises(DownloadError, match=r"/missing\.bin: HTTP 404"):
        download(f"{server.url}/missing.bin", str(tmp_path / "missing.bin"), progress=False)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(DownloadError, match=rf"127\.0\.0\.1:{port}/blob\.bin: download failed \(.*refused"):
        download(f"http://127.0.0.1:{port}/blob.bin", str(tmp_path / "other.bin"), retries=1, retry_wait=0,
                 progress=False)


def test_extraction_refuses_paths_outside_the_target(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"owned"
        member = tarfile.TarInfo("../escaped.txt")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    with pytest.raises(UnsafeArchiveError, match=r"evil\.tar\.gz: refusing member"):
        extract(str(evil), str(tmp_path / "out"))
    assert not (tmp_path / "escaped.txt").exists()

    link = tmp_path / "link.tar"
    with tarfile.open(link, "w") as tar:
        member = tarfile.TarInfo("corpus/passwd")
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(member)
    with pytest.raises(UnsafeArchiveError, match="refusing link"):
        extract(str(link), str(tmp_path / "out"))

    bundle = tmp_path / "evil.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("../../escaped.txt", "owned")
    with pytest.raises(UnsafeArchiveError, match=r"evil\.zip"):
        extract(str(bundle), str(tmp_path / "out"))


def test_zip_extraction_and_corrupt_archives(tmp_path):
    bundle = tmp_path / "good.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("corpus/a.txt", "hello " * 100)
    extract(str(bundle), str(tmp_path / "out"))
    assert (tmp_path / "out" / "corpus" / "a.txt").read_text() == "hello " * 100

    broken = tmp_path / "broken.zip"
    broken.write_bytes(bundle.read_bytes()[:-40])
    with pytest.raises(ArchiveError, match=r"broken\.zip: corrupt"):
        extract(str(broken), str(tmp_path / "out2"))
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(os.urandom(2000))
    with pytest.raises(ArchiveError, match=r"garbage\.tar\.gz: corrupt"):
        extract(str(garbage), str(tmp_path / "out3"))


# ---------------------------------------------------------------- LibriSpeech

LIBRI = {  # subset -> [(speaker, chapter, utterance, transcript, seconds)]
    "dev-clean": [("84", "121123", "0000", "GO DO YOU HEAR", 1.2),
                  ("84", "121123", "0001", "BUT IN LESS THAN FIVE MINUTES", 4.0),
                  ("174", "50561", "0000", "FOREVER, IF GOD'S WILL", 0.8)],
    "test-clean": [("1089", "134686", "0000", "HE HOPED THERE WOULD BE STEW FOR DINNER", 1.5)],
}


def build_librispeech(www):
    folder = www / "resources" / "12"
    folder.mkdir(parents=True)
    for subset, utterances in LIBRI.items():
        root = www / "build" / subset / "LibriSpeech"
        for number, (speaker, chapter, utt, text, seconds) in enumerate(utterances):
            chapter_dir = root / subset / speaker / chapter
            chapter_dir.mkdir(parents=True, exist_ok=True)
            sf.write(chapter_dir / f"{speaker}-{chapter}-{utt}.flac", tone(seconds, 300 + 100 * number), 16000,
                     subtype="PCM_16")
            with open(chapter_dir / f"{speaker}-{chapter}.trans.txt", "a") as handle:
                handle.write(f"{speaker}-{chapter}-{utt} {text}\n")
        (root / "README.TXT").write_text("LibriSpeech ASR corpus\n")
        (root / "SPEAKERS.TXT").write_text("; ID | SEX | SUBSET | MINUTES | NAME\n")
        make_tar(folder / f"{subset}.tar.gz", root, "LibriSpeech")
    listing = "".join(f"{md5(folder / f'{s}.tar.gz')}  {s}.tar.gz\n" for s in LIBRI)
    (folder / "md5sum.txt").write_text(listing)
    return folder


def test_librispeech_end_to_end_with_resume(tmp_path, serve):
    server = serve()
    folder = build_librispeech(tmp_path / "www")
    target = tmp_path / "libri"
    archive = (folder / "dev-clean.tar.gz").read_bytes()
    (target / "downloads").mkdir(parents=True)
    (target / "downloads" / "dev-clean.tar.gz.part").write_bytes(archive[:1000])  # an earlier interrupted run
    base = f"{server.url}/resources/12"
    argv = ["--target-dir", str(target), "--base-url", base, "--subsets", "dev-clean", "test-clean",
            "--checksums", f"{base}/md5sum.txt", "--min-duration", "1.0", "--max-duration", "3.0", "--workers", "2", "--quiet"]
    assert load_script("librispeech")(argv) == 0
    assert ("/resources/12/dev-clean.tar.gz", "bytes=1000-") in server.requests
    assert (target / "downloads" / "dev-clean.tar.gz").read_bytes() == archive

    dev = read_jsonl(target / "librispeech_dev-clean.jsonl")
    assert [r["text"] for r in dev] == ["go do you hear"]  # 4.0 s and 0.8 s pruned by the limits
    audio = check_wav(str(target / "librispeech_dev-clean.jsonl"), dev[0], 1.2)
    assert dominant_frequency(sf.read(audio)[0]) == pytest.approx(300, abs=5)
    test = read_jsonl(target / "librispeech_test-clean.jsonl")
    assert test[0]["text"] == "he hoped there would be stew for dinner"
    check_wav(str(target / "librispeech_test-clean.jsonl"), test[0], 1.5)
    assert [e.text for e in read_manifest(str(target / "librispeech_test-clean.jsonl"))] == [test[0]["text"]]

    # A rerun finds everything in place: no archive is fetched again, the manifests come out the same.
    fetched = len(server.requests)
    assert load_script("librispeech")(argv) == 0
    assert [p for p in server.paths()[fetched:] if p.endswith(".tar.gz")] == []
    assert read_jsonl(target / "librispeech_dev-clean.jsonl") == dev


def test_librispeech_wrong_checksum_writes_no_manifest(tmp_path, serve, capsys):
    server = serve()
    folder = build_librispeech(tmp_path / "www")
    listing = (folder / "md5sum.txt").read_text().replace(md5(folder / "test-clean.tar.gz"), "0" * 32)
    (folder / "md5sum.txt").write_text(listing)
    base = f"{server.url}/resources/12"
    target = tmp_path / "libri"
    status = load_script("librispeech")(["--target-dir", str(target), "--base-url", base, "--subsets", "dev-clean",
                                         "test-clean", "--checksums", f"{base}/md5sum.txt", "--quiet"])
    error = capsys.readouterr().err
    assert status == 1
    assert re.search(r"error: .*test-clean\.tar\.gz: md5 checksum mismatch", error)
    assert len(error.strip().splitlines()) == 1
    assert list(target.glob("*.jsonl")) == []
    assert not (target / "downloads" / "test-clean.tar.gz").exists()
    assert not (target / "downloads" / "test-clean.tar.gz.part").exists()


def test_librispeech_checks_the_published_md5_by_default(tmp_path, serve, capsys):
    server = serve()
    build_librispeech(tmp_path / "www")
    status = load_script("librispeech")(["--target-dir", str(tmp_path / "libri"), "--base-url",
                                         f"{server.url}/resources/12", "--subsets", "dev-clean", "--quiet"])
    assert status == 1
    assert "dev-clean.tar.gz: md5 checksum mismatch (expected 42e2234ba48799c1f50f24a7926300a1" in capsys.readouterr().err


def test_corrupt_archive_fails_clearly_and_is_removed(tmp_path, serve, capsys):
    server = serve()
    folder = build_librispeech(tmp_path / "www")
    data = (folder / "dev-clean.tar.gz").read_bytes()
    (folder / "dev-clean.tar.gz").write_bytes(data[: len(data) // 2])  # truncated upload on the server
    target = tmp_path / "libri"
    status = load_script("librispeech")(["--target-dir", str(target), "--base-url", f"{server.url}/resources/12",
                                         "--subsets", "dev-clean", "--no-verify", "--quiet"])
    error = capsys.readouterr().err
    assert status == 1
    assert re.search(r"dev-clean\.tar\.gz: corrupt or truncated archive", error)
    assert list(target.glob("*.jsonl")) == []
    assert not (target / "downloads" / "dev-clean.tar.gz").exists()  # next run fetches it afresh


# ---------------------------------------------------------------- AN4

def build_an4(www):
    root = www / "build" / "an4"
    splits = {
        "train": ("an4_clstk", [("fash", "an251-fash-b", "YES", 0.9), ("fash", "an253-fash-b", "GO", 1.1),
                                ("fbbh", "cen2-fbbh-b", "ERASE C Q Q F SEVEN", 2.0)]),
        "test": ("an4test_clstk", [("fcaw", "cen1-fcaw-b", "TWO SIX EIGHT FOUR FOUR ONE EIGHT", 1.6)]),
    }
    (root / "etc").mkdir(parents=True)
    for split, (folder, utterances) in splits.items():
        fileids, transcription = [], []
        for number, (speaker, utt, words, seconds) in enumerate(utterances):
            (root / "wav" / folder / speaker).mkdir(parents=True, exist_ok=True)
            sf.write(root / "wav" / folder / speaker / f"{utt}.sph", tone(seconds, 500 + 50 * number), 16000,
                     format="NIST", subtype="PCM_16", endian="BIG")
            fileids.append(f"{folder}/{speaker}/{utt}\n")
            # One line uses the speaker-first id some copies of the corpus carry.
            shown = f"{speaker}-{utt.split('-')[0]}-b" if utt == "an253-fash-b" else utt
            transcription.append(f"<s> {words} </s> ({shown})\n")
        (root / "etc" / f"an4_{split}.fileids").write_text("".join(fileids))
        (root / "etc" / f"an4_{split}.transcription").write_text("".join(transcription))
    (root / "README").write_text("This directory contains the Census (AN4) database audio files.\n")
    (www / "databases" / "an4").mkdir(parents=True)
    return make_tar(www / "databases" / "an4" / "an4_sphere.tar.gz", root, "an4")


def test_an4_end_to_end(tmp_path, serve):
    server = serve()
    archive = build_an4(tmp_path / "www")
    assert sf.info(str(tmp_path / "www" / "build" / "an4" / "wav" / "an4_clstk" / "fash" / "an251-fash-b.sph")).format == "NIST"
    target = tmp_path / "an4"
    status = load_script("an4")(["--target-dir", str(target), "--base-url", f"{server.url}/databases/an4",
                                 "--checksum", f"md5:{md5(archive)}", "--max-duration", "1.8", "--quiet"])
    assert status == 0
    train = read_jsonl(target / "an4_train.jsonl")
    assert [r["text"] for r in train] == ["yes", "go"]  # the 2.0 s utterance pruned
    assert [os.path.basename(r["audio_filepath"]) for r in train] == ["an251-fash-b.wav", "an253-fash-b.wav"]
    for record, seconds in zip(train, (0.9, 1.1)):
        check_wav(str(target / "an4_train.jsonl"), record, seconds)
    test = read_jsonl(target / "an4_test.jsonl")
    assert test[0]["text"] == "two six eight four four one eight"
    audio = check_wav(str(target / "an4_test.jsonl"), test[0], 1.6)
    assert dominant_frequency(sf.read(audio)[0]) == pytest.approx(500, abs=5)


def test_an4_missing_transcript_line_is_named(tmp_path, serve, capsys):
    server = serve()
    build_an4(tmp_path / "www")
    root = tmp_path / "www" / "build" / "an4"
    (root / "etc" / "an4_test.transcription").write_text("<s> SOMETHING ELSE </s> (an999-zzzz-b)\n")
    make_tar(tmp_path / "www" / "databases" / "an4" / "an4_sphere.tar.gz", root, "an4")
    status = load_script("an4")(["--target-dir", str(tmp_path / "an4"), "--base-url", f"{server.url}/databases/an4", "--quiet"])
    assert status == 1
    assert re.search(r"an4_test\.fileids line 1: cen1-fcaw-b has no line in .*an4_test\.transcription",
                     capsys.readouterr().err)
    assert list((tmp_path / "an4").glob("*.jsonl")) == []  # every split is read before any manifest is written


# ---------------------------------------------------------------- Common Voice

CV_HEADER = ("client_id\tpath\tsentence_id\tsentence\tsentence_domain\tup_votes\tdown_votes\tage\tgender\taccents"
             "\tvariant\tlocale\tsegment\n")


def build_common_voice(www, release="cv-corpus-17.0-2024-03-15"):
    root = www / "build" / release / "en"
    (root / "clips").mkdir(parents=True)
    splits = {
        "train": [("common_voice_en_100", '"Hello," she said - it’s fine.', 1.3), ("common_voice_en_101", "Go north!", 2.2)],
        "dev": [("common_voice_en_200", "Why not?", 1.0)],
        "test": [("common_voice_en_300", "Twenty two; apples.", 1.4), ("common_voice_en_301", "Lost clip.", 1.0)],
    }
    for split, rows in splits.items():
        lines = [CV_HEADER]
        for number, (clip, sentence, seconds) in enumerate(rows):
            if clip != "common_voice_en_301":  # listed but missing, as happens in real releases
                sf.write(root / "clips" / f"{clip}.mp3", tone(seconds, 400 + 200 * number, rate=48000), 48000,
                         format="MP3", subtype="MPEG_LAYER_III")
            lines.append(f"abc{number}\t{clip}.mp3\tsid{number}\t{sentence}\t\t2\t0\t\t\t\t\ten\t\n")
        (root / f"{split}.tsv").write_text("".join(lines), encoding="utf-8")
    (root / "validated.tsv").write_text(CV_HEADER)
    (www / "cv").mkdir(parents=True, exist_ok=True)
    return make_tar(www / "cv" / f"{release}-en.tar.gz", root.parent, release)


def test_common_voice_from_a_local_archive(tmp_path):
    archive = build_common_voice(tmp_path / "www")
    target = tmp_path / "cv"
    assert load_script("common_voice")([str(archive), "--target-dir", str(target), "--language", "en", "--quiet"]) == 0
    train = read_jsonl(target / "common_voice_en_train.jsonl")
    assert [r["text"] for r in train] == ["hello she said it's fine", "go north"]
    for record, seconds in zip(train, (1.3, 2.2)):
        check_wav(str(target / "common_voice_en_train.jsonl"), record, seconds, tolerance=0.08)  # MP3 padding
    assert [r["text"] for r in read_jsonl(target / "common_voice_en_test.jsonl")] == ["twenty two apples"]
    assert [r["text"] for r in read_jsonl(target / "common_voice_en_dev.jsonl")] == ["why not"]
    assert os.path.isfile(archive)  # the user's own archive is never touched


def test_common_voice_from_a_url_with_checksum(tmp_path, serve, capsys):
    server = serve()
    archive = build_common_voice(tmp_path / "www")
    url = f"{server.url}/cv/{archive.name}?X-Amz-Signature=abc&Expires=1"  # signed URLs carry a query string
    target = tmp_path / "cv"
    assert load_script("common_voice")([url, "--target-dir", str(target), "--splits", "dev",
                                        "--checksum", f"sha256:{'1' * 64}", "--quiet"]) == 1
    assert f"{archive.name}: sha256 checksum mismatch" in capsys.readouterr().err
    assert list(target.glob("*.jsonl")) == []
    assert load_script("common_voice")([url, "--target-dir", str(target), "--splits", "dev",
                                        "--checksum", f"sha256:{sha256(archive)}", "--quiet"]) == 0
    assert (target / "downloads" / archive.name).read_bytes() == archive.read_bytes()
    assert [r["text"] for r in read_jsonl(target / "common_voice_en_dev.jsonl")] == ["why not"]


# ---------------------------------------------------------------- TED-LIUM

def build_tedlium(www):
    root = www / "build" / "TEDLIUM_release-3"
    talks = {"data": "AlGore_2009", "legacy/dev": "DanBarber_2010", "legacy/test": "JaneMcGonigal_2010"}
    for folder, talk in talks.items():
        (root / folder / "sph").mkdir(parents=True)
        (root / folder / "stm").mkdir(parents=True)
        # 5 s talk: 440 Hz from 1.0 to 2.5 s, 880 Hz from 2.8 to 4.0 s, noise elsewhere.
        talk_audio = tone(5.0, 150.0, seed=1) * 0.1
        talk_audio[16000:40000] = tone(1.5, 440.0)
        talk_audio[44800:64000] = tone(1.2, 880.0)
        sf.write(root / folder / "sph" / f"{talk}.sph", talk_audio, 16000, format="NIST", subtype="PCM_16")
        (root / folder / "stm" / f"{talk}.stm").write_text(
            f"{talk} 1 {talk} 0.00 1.00 <o,f0,male> ignore_time_segment_in_scoring\n"
            f"{talk} 1 {talk} 1.00 2.50 <o,f0,male> it 's a {{NOISE}} good day <unk> to build\n"
            f"{talk} 1 inter_segment_gap 2.50 2.80 <o,,unknown> ignore_time_segment_in_scoring\n"
            f"{talk} 1 {talk} 2.80 4.00 <o,f0,male> we 've got(2) time\n")
    (root / "TEDLIUM.152k.dic").write_text("a AH\n")
    (www / "resources" / "51").mkdir(parents=True)
    return make_tar(www / "resources" / "51" / "TEDLIUM_release-3.tgz", root, "TEDLIUM_release-3")


def test_ted_transcript_cleaning():
    assert clean_transcript("it 's a {NOISE} good day <unk> to build") == "it's a good day to build"
    assert clean_transcript("we 've got(2) time {BREATH}") == "we've got time"


def test_tedlium_end_to_end(tmp_path, serve):
    server = serve()
    archive = build_tedlium(tmp_path / "www")
    target = tmp_path / "ted"
    status = load_script("ted")(["--target-dir", str(target), "--base-url", f"{server.url}/resources/51",
                                 "--checksum", f"sha256:{sha256(archive)}", "--workers", "2", "--quiet"])
    assert status == 0
    for split in ("train", "dev", "test"):
        manifest = target / f"tedlium3_{split}.jsonl"
        records = read_jsonl(manifest)
        assert [r["text"] for r in records] == ["it's a good day to build", "we've got time"]
        first = check_wav(str(manifest), records[0], 1.5)
        second = check_wav(str(manifest), records[1], 1.2)
        assert dominant_frequency(sf.read(first)[0]) == pytest.approx(440, abs=5)
        assert dominant_frequency(sf.read(second)[0]) == pytest.approx(880, abs=5)


def test_tedlium_default_checksum_is_enforced(tmp_path, serve, capsys):
    server = serve()
    build_tedlium(tmp_path / "www")
    target = tmp_path / "ted"
    assert load_script("ted")(["--target-dir", str(target), "--base-url", f"{server.url}/resources/51", "--quiet"]) == 1
    assert "TEDLIUM_release-3.tgz: sha256 checksum mismatch" in capsys.readouterr().err
    assert list(target.glob("*.jsonl")) == []


# ---------------------------------------------------------------- VoxForge

def build_voxforge(www, broken=False):
    index = www / "voxforge"
    index.mkdir(parents=True)
    sessions = {"alice-20100101-abc": ("wav", 16000, [("a0001", "HELLO WORLD", 1.0), ("a0002", "HOW ARE YOU", 1.4)]),
                "bob-20110202-xyz": ("flac", 48000, [("b0001", "GOOD MORNING", 1.2)])}
    links = []
    for session, (kind, rate, prompts) in sessions.items():
        root = www / "build" / session
        (root / kind).mkdir(parents=True)
        (root / "etc").mkdir()
        for number, (name, _, seconds) in enumerate(prompts):
            sf.write(root / kind / f"{name}.{kind}", tone(seconds, 600 + 100 * number, rate=rate), rate, subtype="PCM_16")
        (root / "etc" / "PROMPTS").write_text("".join(f"{session}/mfc/{n} {t}\n" for n, t, _ in prompts))
        (root / "etc" / "README").write_text("User Name:alice\n")
        make_tar(index / f"{session}.tgz", root, session)
        links.append(f'<tr><td><a href="{session}.tgz">{session}.tgz</a></td><td align="right">2010-01-01 </td></tr>')
    if broken:
        (index / "carol-20120303-bad.tgz").write_bytes(os.urandom(500))
        links.append('<tr><td><a href="carol-20120303-bad.tgz">carol-20120303-bad.tgz</a></td></tr>')
    (index / "index.html").write_text(
        "<html><head><title>Index of /16kHz_16bit</title></head><body><h1>Index of /16kHz_16bit</h1><table>"
        '<tr><th><a href="?C=N;O=D">Name</a></th></tr><tr><td><a href="/downloads/">Parent Directory</a></td></tr>'
        + "".join(links) + "</table></body></html>")


def test_voxforge_end_to_end(tmp_path, serve):
    server = serve()
    build_voxforge(tmp_path / "www")
    target = tmp_path / "vox"
    argv = ["--target-dir", str(target), "--base-url", f"{server.url}/voxforge/", "--workers", "2", "--quiet"]
    assert load_script("voxforge")(argv) == 0
    manifest = target / "voxforge_all.jsonl"
    records = read_jsonl(manifest)
    assert [r["text"] for r in records] == ["hello world", "how are you", "good morning"]
    for record, seconds in zip(records, (1.0, 1.4, 1.2)):
        check_wav(str(manifest), record, seconds)  # the 48 kHz FLAC session is resampled too
    assert sorted(p for p in server.paths() if p.endswith(".tgz")) == [
        "/voxforge/alice-20100101-abc.tgz", "/voxforge/bob-20110202-xyz.tgz"]


def test_voxforge_bad_archive_stops_or_is_skipped(tmp_path, serve, capsys):
    server = serve()
    build_voxforge(tmp_path / "www", broken=True)
    target = tmp_path / "vox"
    argv = ["--target-dir", str(target), "--base-url", f"{server.url}/voxforge/", "--workers", "1", "--quiet"]
    assert load_script("voxforge")(argv) == 1
    assert re.search(r"carol-20120303-bad\.tgz: corrupt or truncated archive", capsys.readouterr().err)
    assert not (target / "voxforge_all.jsonl").exists()
    assert load_script("voxforge")(argv + ["--skip-bad-archives"]) == 0
    assert len(read_jsonl(target / "voxforge_all.jsonl")) == 3


# ---------------------------------------------------------------- scripts as commands

def test_scripts_run_from_the_repository_root():
    result = subprocess.run([sys.executable, "data/an4.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "--target-dir" in result.stdout and "--base-url" in result.stdout


def test_fetch_and_extract_skips_work_already_done(tmp_path, serve):
    server = serve()
    folder = tmp_path / "www" / "pack"
    (folder / "corpus").mkdir(parents=True)
    (folder / "corpus" / "a.txt").write_text("a")
    make_tar(tmp_path / "www" / "pack.tar.gz", folder / "corpus", "corpus")
    fetch_and_extract(f"{server.url}/pack.tar.gz", str(tmp_path / "dl"), str(tmp_path / "raw"), progress=False)
    assert (tmp_path / "raw" / "corpus" / "a.txt").read_text() == "a"
    fetch_and_extract(f"{server.url}/pack.tar.gz", str(tmp_path / "dl"), str(tmp_path / "raw"), progress=False)
    assert server.paths() == ["/pack.tar.gz"]


def test_common_voice_needs_a_language_when_a_release_has_several(tmp_path):
    from deepspeech_pytorch.corpora.common_voice import find_language_dir

    for language in ("en", "fr"):
        (tmp_path / "cv-corpus-17.0" / language / "clips").mkdir(parents=True)
        (tmp_path / "cv-corpus-17.0" / language / "train.tsv").write_text(CV_HEADER)
    with pytest.raises(CorpusError, match="several Common Voice folders"):
        find_language_dir(str(tmp_path))
    assert find_language_dir(str(tmp_path), "fr") == str(tmp_path / "cv-corpus-17.0" / "fr")
    with pytest.raises(CorpusError, match="no Common Voice release found for language 'de'"):
        find_language_dir(str(tmp_path), "de")
