"""Pretrain BrainMass on the bundled development fMRI cohort (CPU is fine) and save the encoder.

    python examples/pretrain_devfmri.py --preset tiny --epochs 20 --output-dir runs/devfmri_tiny
"""

import argparse

from brainmass_hf import BrainMassConfig
from brainmass_hf.data import bundled_roi_names, load_devfmri
from brainmass_hf.training import LOSS_PARTS, BrainMassPretrainingArguments, pretrain

parser = argparse.ArgumentParser()
parser.add_argument("--preset", default="tiny")
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--output-dir", default="runs/devfmri_tiny")
a = parser.parse_args()

dataset = load_devfmri()  # 155 scans × (168, 116)
config = BrainMassConfig.from_preset(a.preset, num_rois=116, atlas_name="AAL-116", roi_names=bundled_roi_names())
args = BrainMassPretrainingArguments(
    output_dir=a.output_dir, num_train_epochs=a.epochs, per_device_train_batch_size=a.batch_size, warmup_epochs=3
)
trainer = pretrain(dataset, config, args)  # EMA update, value clipping and loss-part logging included
# trainer.state.log_history: one entry per logging step (every 10 steps: loss + its parts), then a run summary
parts = [h for h in trainer.state.log_history if "lra_loss" in h]
summary = {"train_loss": round(trainer.state.log_history[-1]["train_loss"], 4)}
if parts:
    summary.update({k: round(parts[-1][k], 4) for k in ("loss", *LOSS_PARTS)})
print(summary)
print(f"encoder: {a.output_dir}/encoder  (AutoModel.from_pretrained)")
