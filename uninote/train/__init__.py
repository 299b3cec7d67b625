"""Training: stage-1 contrastive SFT (``sft``, ``sft_config``, ``sft_data``, ``sft_objective``) and
the RL stage (``rl*``). Both read the backbone feature cache of ``uninote.model.features``.

Nothing in ``uninote.model``, ``uninote.index`` or ``uninote.data`` imports this package, so a
serving box never loads it.
"""
