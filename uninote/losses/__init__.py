"""Training losses, one per file (equation, paper, inputs and an example in each docstring)."""

from uninote.losses.infonce import InfoNCELoss
from uninote.losses.matryoshka import MatryoshkaLoss
from uninote.losses.region_maxsim import RegionMaxSimLoss, maxsim_matrix

__all__ = ["InfoNCELoss", "MatryoshkaLoss", "RegionMaxSimLoss", "maxsim_matrix"]
