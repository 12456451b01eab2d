"""Write an utterance through each waveform augmentation, to listen to, and time each effect.

python tools/augment_preview.py speech.wav --output preview/ [--noise-dir noises/] [--babble a.wav b.wav ...]
python tools/augment_preview.py speech.wav --time      # milliseconds of CPU per second of audio

Each effect is forced on (probability 1) with its default parameter ranges and written as
<output>/<effect>.wav; `all.wav` goes through the whole chain at once (band limit and one of the
default codecs, no telephone). With --time, each effect
runs --repeats times on the utterance (fresh draws each time) and the mean cost per second of
audio is printed; room reverb is timed with its rooms already simulated (as in training, where
each worker simulates a room once) and the simulation of one room is timed apart.
"""

import os
import sys
import time
from dataclasses import replace
from typing import Dict, List, Optional

import numpy as np

from deepspeech_pytorch.cli import ArgumentParser
from deepspeech_pytorch.audio import AudioError, load_audio, write_audio
from deepspeech_pytorch.augment import (BabbleAugmentConfig, ChannelAugmentConfig, RoomAugmentConfig, RoomReverb,
                                        SilenceAugmentConfig, WaveformAugmenter)
from deepspeech_pytorch.channel import room_impulse_response
from deepspeech_pytorch.configs import NoiseAugmentConfig, PerturbConfig

RATE = 16000  # Hz


def effects(noise_dir: Optional[str], babble: List[str]) -> Dict[str, dict]:
    """Name -> WaveformAugmenter keyword arguments with that one effect always on."""
    channel = ChannelAugmentConfig(enabled=True, telephone_probability=0.0, bandlimit_probability=0.0,
                                   codec_probability=0.0)
    found = {
        "speed": dict(perturb=PerturbConfig(speed_enabled=True)),
        "gain": dict(perturb=PerturbConfig(gain_enabled=True)),
        "silence": dict(silence=SilenceAugmentConfig(enabled=True, probability=1.0, pause_probability=1.0)),
        "room": dict(room=RoomAugmentConfig(enabled=True, probability=1.0, rooms=8)),
        "telephone": dict(channel=replace(channel, telephone_probability=1.0)),
        "bandlimit": dict(channel=replace(channel, bandlimit_probability=1.0)),
    }
    for name in ("mp3", "gsm", "mulaw", "alaw", "opus"):
        found[name] = dict(channel=replace(channel, codec_probability=1.0, codecs=[name]))
    if noise_dir:
        found["noise"] = dict(noise=NoiseAugmentConfig(enabled=True, directory=noise_dir, probability=1.0))
    if babble:
        found["babble"] = dict(babble=BabbleAugmentConfig(enabled=True, probability=1.0), speech_paths=babble)
    everything = {}
    for settings in found.values():
        everything.update(settings)
    everything["perturb"] = PerturbConfig(speed_enabled=True, gain_enabled=True)
    everything["channel"] = replace(channel, bandlimit_probability=1.0, codec_probability=1.0)  # default codecs
    found["all"] = everything
    return found


def augmenter(settings: dict) -> WaveformAugmenter:
    settings = dict(settings)
    perturb = settings.pop("perturb", PerturbConfig())
    noise = settings.pop("noise", NoiseAugmentConfig())
    return WaveformAugmenter(perturb, noise, RATE, **settings)


def main(argv: Optional[List[str]] = None) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("audio", help="an utterance (any format load_audio reads)")
    parser.add_argument("--output", help="folder for the previews")
    parser.add_argument("--noise-dir", help="folder of noise/music clips for the noise effect")
    parser.add_argument("--babble", nargs="*", default=[], help="utterances to babble from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time", action="store_true", help="print ms of CPU per second of audio for each effect")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    if not args.output and not args.time:
        parser.error("give --output, --time or both")
    try:
        samples = load_audio(args.audio, RATE)
        chosen = effects(args.noise_dir, args.babble)
        seconds = len(samples) / RATE
        if args.output:
            os.makedirs(args.output, exist_ok=True)
            for name, settings in chosen.items():
                out = augmenter(settings)(samples, np.random.default_rng(args.seed))
                write_audio(os.path.join(args.output, f"{name}.wav"), out * min(1.0, 0.99 / max(np.abs(out).max(), 1e-9)))
            print(f"wrote {len(chosen)} previews of {args.audio} ({seconds:.2f} s) to {args.output}")
        if args.time:
            print(f"{'effect':<10} {'ms per s of audio':>18}")
            for name, settings in chosen.items():
                run = augmenter(settings)
                for repeat in range(args.repeats):  # warm: imports, first simulated rooms
                    run(samples, np.random.default_rng([args.seed, repeat]))
                start = time.process_time()
                for repeat in range(args.repeats):
                    run(samples, np.random.default_rng([args.seed, repeat]))
                cost = (time.process_time() - start) / args.repeats / seconds * 1000.0
                print(f"{name:<10} {cost:>18.2f}")
            reverb = RoomReverb(chosen["room"]["room"], RATE)
            start = time.process_time()
            for number in range(8, 8 + args.repeats):
                room, seed = reverb.room(number)
                room_impulse_response(room, RATE, seed)
            print(f"one simulated room: {(time.process_time() - start) / args.repeats * 1000.0:.0f} ms "
                  f"(once per room and worker)")
    except (AudioError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
