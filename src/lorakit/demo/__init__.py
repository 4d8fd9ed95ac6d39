"""``python -m lorakit.demo`` (what ``make demo`` runs): LoRA on minilm-l6 for topic classification."""
