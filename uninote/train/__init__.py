"""Training: stage-1 contrastive SFT (``sft``, ``sft_config``, ``sft_data``, ``sft_objective``), the
backbone feature cache both stages read (``features``), and the RL stage (``rl*``).

Nothing here is imported by ``uninote.model`` at import time, so a serving box never loads it.
"""
