"""UniNote: one embedding model for multimodal note-to-note retrieval and ranking.

The library knows nothing of Gradio. Import what you need from its sub-packages:
``uninote.data`` (notes and corpora), ``uninote.model`` (towers, fusion, checkpoints),
``uninote.losses``, ``uninote.train`` (SFT, RL), ``uninote.index`` (FAISS indexes and retrieval
strategies), ``uninote.eval`` (metrics and the evaluation harness).
"""

__version__ = "0.1.0"

# The Matryoshka prefix dims a model is trained, evaluated and served at unless configured otherwise
# (the last one is the default full embedding dim). Defined here, where importing it pulls nothing in.
MATRYOSHKA_DIMS = (64, 128, 256, 512, 768)
