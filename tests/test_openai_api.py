"""POST /v1/audio/transcriptions as OpenAI's own Python client sees it: server.py with the bundled model
started as a process on 127.0.0.1, the `openai` package pointed at it, real speech (bundled samples,
one with a 1.5 s pause inserted). Text, SRT, WebVTT and verbose_json with word and segment timestamps;
OpenAI's error shape for what it refuses."""

import io
import subprocess
import sys

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from deepspeech_pytorch.inference import default_model_path
from deepspeech_pytorch.metrics import cer
from deepspeech_pytorch.subtitles import format_srt, format_vtt, segment_words
from test_server import Server, metric_values
from test_subtitles import W, parse, write_paused_speech

MAX_UPLOAD_BYTES = 600_000  # paused.wav is about 300 kB
MAX_AUDIO_SECONDS = 15.0
PATH = "/v1/audio/transcriptions"


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("openai_audio")
    pause, references = write_paused_speech(folder)
    return {"folder": folder, "path": folder / "paused.wav", "bytes": (folder / "paused.wav").read_bytes(),
            "pause": pause, "reference": " ".join(references["paused"])}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    started = Server(tmp_path_factory.mktemp("openai_server"), default_model_path(),
                     f"max_upload_bytes={MAX_UPLOAD_BYTES}", f"max_audio_seconds={MAX_AUDIO_SECONDS}")
    try:
        started.wait_ready()
        yield started
    finally:
        code = started.stop()
        log = started.log_path.read_text()
        assert code == 0, log
        assert "Traceback" not in log and "Exception in ASGI application" not in log, log


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-checked", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def native(server, audio):
    """The same file through POST /transcribe: what the one transcription path gives."""
    response = httpx.post(server.url + "/transcribe", files={"file": ("paused.wav", audio["bytes"], "audio/wav")},
                          timeout=120)
    assert response.status_code == 200, response.text
    return response.json()


def transcribe(client, audio, **options):
    return client.audio.transcriptions.create(model="whisper-1", file=("paused.wav", audio["bytes"], "audio/wav"),
                                              **options)


def test_json_is_the_transcript_of_the_one_transcription_path(client, audio, native):
    result = transcribe(client, audio)
    assert result.text == native["transcript"]
    assert cer([audio["reference"]], [result.text]) < 0.15
    # language, prompt and temperature are accepted; prompt and temperature change nothing
    again = transcribe(client, audio, response_format="json", language="en", prompt="Gypsies and economists.",
                       temperature=0.7)
    assert again.text == result.text


def test_text(client, audio, native):
    text = transcribe(client, audio, response_format="text")
    assert isinstance(text, str) and text == native["transcript"] + "\n"


def test_srt_and_vtt_are_the_subtitles_of_the_word_timings_cut_at_the_pause(client, audio, native, tmp_path):
    words = [W(w["word"], w["start"], w["end"]) for w in native["words"]]
    srt = transcribe(client, audio, response_format="srt")
    vtt = transcribe(client, audio, response_format="vtt")
    assert srt == format_srt(segment_words(words))  # deepspeech_pytorch.subtitles, as transcribe.py writes them
    assert vtt == format_vtt(segment_words(words))
    (tmp_path / "a.srt").write_text(srt)
    (tmp_path / "a.vtt").write_text(vtt)
    srt_cues, vtt_cues = parse(tmp_path / "a.srt"), parse(tmp_path / "a.vtt")
    assert srt_cues == vtt_cues and len(srt_cues) >= 2
    assert " ".join(" ".join(text.split()) for _, _, text in srt_cues) == native["transcript"]
    pause_start, pause_end = audio["pause"]
    assert any(end <= pause_start + 0.25 and following[0] >= pause_end - 0.25
               for (_, end, _), following in zip(srt_cues, srt_cues[1:])), srt_cues


def test_verbose_json_with_word_and_segment_timestamps(client, audio, native, tmp_path):
    result = transcribe(client, audio, response_format="verbose_json", timestamp_granularities=["word", "segment"])
    assert result.text == native["transcript"] and result.language == "english"
    assert result.duration == native["duration"] and result.usage.seconds == native["duration"]
    assert [(w.word, w.start, w.end) for w in result.words] == [(w["word"], w["start"], w["end"])
                                                                 for w in native["words"]]
    assert all(0 <= w.start <= w.end <= result.duration for w in result.words)
    assert all(a.start <= b.start for a, b in zip(result.words, result.words[1:]))
    (tmp_path / "a.srt").write_text(transcribe(client, audio, response_format="srt"))
    cues = parse(tmp_path / "a.srt")
    assert [(s.id, s.start, s.end, s.text) for s in result.segments] == [
        (number, start, end, " ".join(text.split())) for number, (start, end, text) in enumerate(cues)]
    for segment in result.segments:
        assert segment.seek == round(segment.start * 100) and segment.tokens == []
        assert 0.5 < segment.compression_ratio < 2.4  # speech, not a repetition loop
        assert segment.avg_logprob == 0.0 and segment.no_speech_prob == 0.0 and segment.temperature == 0.0
    pause_start, pause_end = audio["pause"]
    before = [w for w in result.words if w.end <= pause_start + 0.25]
    after = [w for w in result.words if w.start >= pause_end - 0.25]
    assert len(before) + len(after) == len(result.words) and before and after  # no word inside the silence


def test_verbose_json_gives_segments_by_default_and_words_only_when_asked(client, audio):
    default = transcribe(client, audio, response_format="verbose_json")
    assert default.segments and default.words is None
    words_only = transcribe(client, audio, response_format="verbose_json", timestamp_granularities=["word"])
    assert words_only.words and words_only.segments is None


def test_the_client_gets_openai_errors_naming_the_parameter(client, audio):
    with pytest.raises(openai.BadRequestError) as refused:
        transcribe(client, audio, language="fr")
    assert refused.value.status_code == 400 and refused.value.code == "unsupported_language"
    assert refused.value.param == "language" and "English only" in refused.value.message
    assert refused.value.type == "invalid_request_error"
    for options, param in [({"response_format": "json", "timestamp_granularities": ["word"]}, "timestamp_granularities[]"),
                           ({"temperature": 1.5}, "temperature"),
                           ({"response_format": "docx"}, "response_format"),
                           ({"extra_body": {"decoder": "nonsense"}}, "decoder")]:
        with pytest.raises(openai.BadRequestError) as refused:
            transcribe(client, audio, **options)
        assert refused.value.code == "invalid_parameter" and refused.value.param == param, options
    with pytest.raises(openai.BadRequestError) as refused:  # OpenAI's 400 (POST /transcribe says 415)
        client.audio.transcriptions.create(model="whisper-1", file=("notes.wav", b"this is not audio", "audio/wav"))
    assert refused.value.status_code == 400 and refused.value.code == "unsupported_audio_type"
    assert refused.value.param == "file" and "notes.wav" in refused.value.message
    with pytest.raises(openai.APIStatusError) as refused:
        client.audio.transcriptions.create(model="whisper-1", file=("big.wav", audio["bytes"] * 3, "audio/wav"))
    assert refused.value.status_code == 413 and refused.value.code == "upload_too_large"


def openai_error(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["code"] == code and body["error"]["message"]
    assert "\n" not in body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize("request_options, status, code, param", [
    ({"files": {"model": (None, "whisper-1")}}, 400, "missing_file", "file"),
    ({"json": {"file": "x"}}, 400, "unsupported_content_type", None),
    ({"files": {"file": ("a.wav", b"", "audio/wav")}}, 400, "empty_file", "file"),
    ({"files": [("file", ("a.wav", b"RIFF", "audio/wav")), ("language", (None, "en")),
                ("language", (None, "de"))]}, 400, "invalid_parameter", "language"),
    ({"files": {"file": ("a.wav", b"RIFF", "audio/wav")}, "data": {"stream": "true"}}, 400, "invalid_parameter",
     "stream"),
])
def test_raw_requests_get_openai_errors(server, request_options, status, code, param):
    error = openai_error(httpx.post(server.url + PATH, timeout=60, **request_options), status, code)
    assert error["param"] == param and error["type"] == "invalid_request_error"


def test_long_audio_is_refused_with_the_servers_limit(server, audio):
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(16000 * (MAX_AUDIO_SECONDS + 1)), dtype=np.int16), 16000, format="WAV")
    response = httpx.post(server.url + PATH, files={"file": ("long.wav", buffer.getvalue(), "audio/wav")}, timeout=60)
    error = openai_error(response, 400, "audio_too_long")  # OpenAI's 413 is for the body's size only
    assert "15 seconds" in error["message"] and error["param"] == "file"


def test_curl_style_fields_and_the_decoder_extension(server, audio, native):
    """Without the client: `-F timestamp_granularities=word` (no brackets) and this server's decoder field."""
    response = httpx.post(server.url + PATH, files={"file": ("a.wav", audio["bytes"], "audio/wav")},
                          data={"response_format": "verbose_json", "timestamp_granularities": "word",
                                "decoder": "greedy", "language": "en-US", "model": "anything"}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == native["transcript"] and "segments" not in body and len(body["words"]) == len(native["words"])
    vtt = httpx.post(server.url + PATH, files={"file": ("a.wav", audio["bytes"], "audio/wav")},
                     data={"response_format": "vtt"}, timeout=120)
    assert vtt.headers["content-type"].startswith("text/vtt") and vtt.text.startswith("WEBVTT\n")


def test_openapi_page_and_metrics(server):
    schema = httpx.get(server.url + "/openapi.json").json()
    operation = schema["paths"][PATH]["post"]
    assert set(operation["responses"]) == {"200", "400", "413", "503", "504"}
    assert set(operation["responses"]["200"]["content"]) == {"application/json", "text/plain", "text/vtt"}
    assert operation["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/OpenAIErrorResponse")
    body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"]
    assert body["properties"]["response_format"]["enum"] == ["json", "text", "srt", "vtt", "verbose_json"]
    values = metric_values(httpx.get(server.url + "/metrics").text)
    assert values[f'deepspeech_http_requests_total{{method="POST",path="{PATH}",status="200"}}'] >= 5
    assert values['deepspeech_errors_total{code="unsupported_language"}'] >= 1


def test_schemathesis_finds_no_server_errors_or_undocumented_responses(server, tmp_path):
    """Requests generated from the OpenAPI page for this route: no 5xx, every answer as documented."""
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", server.url + "/openapi.json", "--include-path", PATH,
         "--checks", "all", "--exclude-checks", "positive_data_acceptance", "--max-examples", "40", "--seed", "6",
         "--workers", "2", "--request-timeout", "30", "--no-shrink"],
        cwd=tmp_path, capture_output=True, text=True, timeout=200)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "passed" in result.stdout


# ---- review of issue 21: OpenAI's statuses, unknown parameters refused, one-line messages naming the field ----

def test_query_parameters_are_refused_naming_them_not_ignored(client, server, audio):
    """The route takes no query parameters: one sent by mistake (here the client's extra_query) was silently
    ignored, so `?response_format=text` answered JSON."""
    with pytest.raises(openai.BadRequestError) as refused:
        transcribe(client, audio, extra_query={"response_format": "text"})
    assert refused.value.status_code == 400 and refused.value.code == "invalid_parameter"
    assert refused.value.param == "response_format" and refused.value.type == "invalid_request_error"
    assert "query parameter 'response_format'" in refused.value.message and "\n" not in refused.value.message
    response = httpx.post(server.url + PATH + "?verbose=1&decoder=greedy",
                          files={"file": ("a.wav", audio["bytes"], "audio/wav")}, timeout=60)
    error = openai_error(response, 400, "invalid_parameter")
    assert error["param"] == "decoder" and "query parameter 'decoder'" in error["message"]


def test_unknown_form_fields_are_refused_and_openais_own_are_accepted(client, audio, native):
    with pytest.raises(openai.BadRequestError) as refused:
        transcribe(client, audio, extra_body={"respone_format": "srt"})
    assert refused.value.code == "invalid_parameter" and refused.value.param == "respone_format"
    assert "form field 'respone_format'" in refused.value.message and "response_format" in refused.value.message
    accepted = transcribe(client, audio, extra_body={"chunking_strategy": "auto", "include[]": "logprobs"})
    assert accepted.text == native["transcript"]


@pytest.mark.parametrize("files, code", [
    ({"model": (None, "whisper-1")}, "missing_file"),
    ({"file": ("a.wav", b"", "audio/wav")}, "empty_file"),
    ({"file": ("a.wav", b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav")}, "invalid_audio"),
    ({"file": ("notes.txt", b"not audio at all", "text/plain")}, "unsupported_audio_type"),
])
def test_file_errors_are_openais_400_with_one_line_naming_the_file(server, files, code):
    """POST /transcribe answers these 422 or 415; OpenAI answers 400 (a missing file is its 400
    "you must provide a file"), so an OpenAI client raises BadRequestError, not UnprocessableEntityError."""
    error = openai_error(httpx.post(server.url + PATH, files=files, timeout=60), 400, code)
    assert error["param"] == "file" and error["type"] == "invalid_request_error"
    assert "file" in error["message"].split(":")[0] or "'file'" in error["message"], error


def test_the_client_gets_bad_request_for_an_undecodable_file(client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF\x24\x00\x00\x00WAVEfmt ",
                                                                    "audio/wav"))
    assert refused.value.param == "file" and refused.value.code in ("invalid_audio", "unsupported_audio_type")
    assert "\n" not in refused.value.message
