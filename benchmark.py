"""Speed figures as JSON.

python benchmark.py preset=ds2_original batch_size=8 seconds=5          # training step ms and inference RTF
python benchmark.py bundled=true                                         # the same for the bundled model
python benchmark.py mode=throughput batch_sizes=[1,4,16] precisions=[fp32,bf16]
torchrun --nproc_per_node=2 benchmark.py mode=throughput                 # the same under DDP
python benchmark.py mode=profile                                         # FLOPs per layer, time per stage (bundled model)
"""
import hydra

from deepspeech_pytorch.cli import command_line, run_benchmark
from deepspeech_pytorch.configs import register_configs

register_configs()


@hydra.main(version_base="1.3", config_path="configs", config_name="benchmark")
def main(config) -> None:
    run_benchmark(config)


if __name__ == "__main__":
    with command_line("benchmark"):
        main()
