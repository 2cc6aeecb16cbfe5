"""Inference tasks as pure functions over (model, tokenizer, tensors): captioning, VQA
(generate and rank), image-text matching, retrieval over an on-disk index, zero-shot
classification. No CLI or file-format knowledge lives here (the index is the one stored
artefact, tasks/index.py)."""
