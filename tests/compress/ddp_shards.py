"""Run by torchrun from test_ddp.py: trains on an image folder while every DataLoader worker logs the indices it reads.

Usage: python -m torch.distributed.run --nproc_per_node 2 tests/compress/ddp_shards.py FOLDER OUT EPOCHS
"""

import os
import sys
from pathlib import Path

from deploykit.compress.distill import distill
from deploykit.compress.configs import DistillConfig
from deploykit.data import Preprocess
from deploykit.data.training import TrainingData, load_training_data
from deploykit.models import get_spec
from deploykit.recipes.ref import build_model


class Logged:
    """A dataset that appends each index it serves to a file of its rank and process."""

    def __init__(self, dataset, log: Path) -> None:
        self.dataset, self.log = dataset, log

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        with open(self.log / f"rank{os.environ['RANK']}-pid{os.getpid()}.txt", "a") as file:
            file.write(f"{index}\n")
        return self.dataset[index]


def main() -> None:
    folder, out, epochs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    (out / "seen").mkdir(parents=True, exist_ok=True)
    data = load_training_data(str(folder), Preprocess.for_model(get_spec("cifar_resnet20"), 16))
    logged = TrainingData(Logged(data.train, out / "seen"), data.val, data.num_classes)
    model = build_model("cifar_resnet20", num_classes=data.num_classes)
    distill(model, None, logged, DistillConfig(epochs=epochs, alpha=0.0, batch_size=8, lr=0.05), out, {"name": "cifar_resnet20", "kwargs": {"num_classes": data.num_classes}}, workers=1)


if __name__ == "__main__":
    main()
