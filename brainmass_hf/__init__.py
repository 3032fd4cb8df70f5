"""brainmass_hf: BrainMass (Yang et al., IEEE TMI 2024), a self-supervised foundation model of brain networks,
on Hugging Face ``transformers``.

Importing the package registers the model family with the Auto classes (``AutoConfig``, ``AutoModel``,
``AutoModelForPreTraining``, ``AutoModelForSequenceClassification``, ``AutoFeatureExtractor``) and marks it for
``trust_remote_code`` export, so a saved folder carries its code and loads where this package is not installed.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
)

from .configuration_brainmass import BRAINMASS_PRESETS, BrainMassConfig
from .connectivity import (
    fc_upper_triangle,
    functional_connectivity,
    pad_time_series,
    pseudo_fc_time_mask,
    pseudo_functional_connectivity,
)
from .data_collator import (
    DataCollatorForConnectomeClassification,
    DataCollatorForPseudoFC,
    draw_pretraining_choices,
)
from .modeling_brainmass import (
    BrainMassForConnectomeClassification,
    BrainMassForPreTraining,
    BrainMassModel,
    BrainMassPreTrainedModel,
    BrainMassPreTrainingOutput,
)
from .processing_brainmass import BrainMassFeatureExtractor

__version__ = "0.1.0"

AutoConfig.register(BrainMassConfig.model_type, BrainMassConfig, exist_ok=True)
AutoModel.register(BrainMassConfig, BrainMassModel, exist_ok=True)
AutoModelForPreTraining.register(BrainMassConfig, BrainMassForPreTraining, exist_ok=True)
AutoModelForSequenceClassification.register(BrainMassConfig, BrainMassForConnectomeClassification, exist_ok=True)
AutoFeatureExtractor.register(BrainMassConfig, BrainMassFeatureExtractor, exist_ok=True)

BrainMassConfig.register_for_auto_class("AutoConfig")
BrainMassModel.register_for_auto_class("AutoModel")
BrainMassForPreTraining.register_for_auto_class("AutoModelForPreTraining")
BrainMassForConnectomeClassification.register_for_auto_class("AutoModelForSequenceClassification")
BrainMassFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

__all__ = [
    "BRAINMASS_PRESETS",
    "BrainMassConfig",
    "BrainMassModel",
    "BrainMassPreTrainedModel",
    "BrainMassForPreTraining",
    "BrainMassPreTrainingOutput",
    "BrainMassForConnectomeClassification",
    "BrainMassFeatureExtractor",
    "DataCollatorForPseudoFC",
    "DataCollatorForConnectomeClassification",
    "draw_pretraining_choices",
    "functional_connectivity",
    "pseudo_functional_connectivity",
    "pseudo_fc_time_mask",
    "pad_time_series",
    "fc_upper_triangle",
]
