"""The paper's protocol (and friends) on the bundled cohort, with raw-FC and random-init baselines.

    python examples/evaluate_devfmri.py --encoder runs/devfmri_tiny/encoder --output-dir runs/devfmri_eval
"""

import argparse

from brainmass_hf.evaluation import evaluate

parser = argparse.ArgumentParser()
parser.add_argument("--encoder", required=True)
parser.add_argument("--protocols", default="paper,linear_probe,few_shot")
parser.add_argument("--n-repeats", type=int, default=10)
parser.add_argument("--output-dir", default="runs/devfmri_eval")
a = parser.parse_args()

report = evaluate(a.encoder, "devfmri", protocols=a.protocols, n_repeats=a.n_repeats, output_dir=a.output_dir)
print(report.to_markdown())
