"""Print training-step time and inference real-time factor as JSON: python benchmark.py preset=ds2_original batch_size=8"""
import json

import hydra

from deepspeech_pytorch.benchmarking import benchmark
from deepspeech_pytorch.cli import reports_user_errors
from deepspeech_pytorch.configs import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="benchmark")
@reports_user_errors
def main(config) -> None:
    print(json.dumps(benchmark(config.preset, config.batch_size, config.seconds, config.device,
                               config.warmup, config.repeats)))


if __name__ == "__main__":
    main()
