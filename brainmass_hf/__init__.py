"""BrainMass on Hugging Face transformers."""
