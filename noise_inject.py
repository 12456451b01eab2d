"""Mix a noise file into an audio file at a chosen SNR, to hear what noise augmentation does:
python noise_inject.py input_path=speech.wav noise_path=noise.wav output_path=mixed.wav snr_db=10"""
import hydra

from deepspeech_pytorch.augment import inject_noise_file
from deepspeech_pytorch.cli import reports_user_errors
from deepspeech_pytorch.configs import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="noise_inject")
@reports_user_errors
def main(config) -> None:
    snr = inject_noise_file(config.input_path, config.noise_path, config.output_path, config.snr_db, config.seed)
    print(f"wrote {config.output_path} (SNR {snr:.1f} dB)")


if __name__ == "__main__":
    main()
