"""Serve transcription over HTTP: python server.py model_path=best.pt port=8000 (see ServerConfig for the settings)"""
import hydra

from deepspeech_pytorch.configs import register_configs
from deepspeech_pytorch.serving import run_server

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="server")
def main(config) -> None:
    run_server(config)


if __name__ == "__main__":
    main()
