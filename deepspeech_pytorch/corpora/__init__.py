"""Preparation of the standard speech corpora: download, verify, unpack, convert to 16 kHz WAV, write manifests.

One module per corpus (`librispeech`, `an4`, `common_voice`, `ted`, `voxforge`; the game corpora `queen`, `sky`
with `rnc`, and `drascula`, the real-speech test set; `align` matches clips to script lines), each exposing
`prepare(...)`, on top of the shared steps: `download` (HTTP with resume and checksums), `archive` (safe unpacking),
`convert` (audio conversion and manifest writing) and `verify` (manifest checks). The scripts in `data/` are
thin command lines over these, sharing their flags and error handling through `cli`.

The offline speech factory lives here too: `sentences` (English text from Debian packages), `tts` (espeak-ng,
MBROLA, Pico, RHVoice, festival, flite voices), `kokoro` (Kokoro-82M through ONNX Runtime), `synthetic` (a corpus split by voice) and `noise_set` (noise clips for augmentation).
"""


class CorpusError(RuntimeError):
    """A corpus that cannot be prepared: a failed download or checksum, a corrupt archive, a missing file.

    The message names the file or URL and what is wrong, so command lines can print it as one line.
    """
