"""Stream an audio file to a running server in real time and print partial and final results:
python stream.py speech.wav [--url ws://127.0.0.1:8000/ws/transcribe] [--speed 0] (--help lists the options)"""
import sys

from deepspeech_pytorch.stream_client import main

if __name__ == "__main__":
    sys.exit(main())
