"""What a trained Llama-SMoP / Llama-AVSR model is: configs, the zoo, PyTorch modules, checkpoints."""
