"""Fine-tune a BrainMass encoder on child vs adult and report test accuracy / AUC.

    python examples/finetune_devfmri.py --encoder runs/devfmri_tiny/encoder --output-dir runs/devfmri_ft
(without --encoder, fine-tunes a randomly initialised tiny model)
"""

import argparse

from brainmass_hf import BrainMassConfig, BrainMassModel
from brainmass_hf.data import load_devfmri
from brainmass_hf.training import finetune

parser = argparse.ArgumentParser()
parser.add_argument("--encoder", default=None)
parser.add_argument("--epochs", type=float, default=12)
parser.add_argument("--output-dir", default="runs/devfmri_ft")
a = parser.parse_args()

split = load_devfmri().train_test_split(test_size=0.3, seed=0, stratify_by_column="label")
model = a.encoder or BrainMassModel(BrainMassConfig.from_preset("tiny", num_rois=116))
trainer = finetune(
    model, split["train"], split["test"], output_dir=a.output_dir, num_train_epochs=a.epochs, learning_rate=1e-3
)
print({k: round(v, 4) for k, v in trainer.evaluate().items() if isinstance(v, float)})
