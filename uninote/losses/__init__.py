"""Training losses, one per file (equation, paper, inputs and an example in each docstring)."""

from uninote.losses.infonce import InfoNCELoss
from uninote.losses.matryoshka import MatryoshkaLoss, matryoshka_prefix
from uninote.losses.region_maxsim import RegionMaxSimLoss, maxsim_matrix

__all__ = ["InfoNCELoss", "MatryoshkaLoss", "RegionMaxSimLoss", "matryoshka_prefix", "maxsim_matrix"]
