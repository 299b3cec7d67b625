"""The stage-1 objective: every training signal, computed from ONE ``forward_features`` output.

Signals (each an InfoNCE with in-batch + hard negatives unless noted), for a batch of pairs
(query note q_i, positive note p_i, hard negatives n_ik):

- ``note``        note(q)  -> note(p)                          symmetric, hard negatives
- ``image_note``  photo(q) -> note(p)   (an uploaded photo finds notes)      hard negatives
- ``text_note``   text(q)  -> note(p)   (a typed query finds notes)          hard negatives
- ``image_text``  photo(u) <-> text(u)  for every note u in the batch (learned alignment)
- ``image_image`` photo(q) -> photo(p)  (image granularity)
- ``region``      regions(photo q) vs regions(photo p), Chamfer max-sim InfoNCE
- ``image_note_kd``  photo(u) -> every note of the batch, taught by note(u)'s ranking of them
- ``image_image_kd`` photo(u) -> every photo of the batch, taught by note(u)'s ranking of their notes

The two ``_kd`` signals are distillation (Hinton et al. 2015): a KL divergence from the softmax of
the note's own similarities (detached; the note vector, text included, is the strongest ranker)
to the photo's, over every note u in the batch with a photo, u itself left out. An InfoNCE pair
tells the photo which one note is its positive; the teacher grades all of the batch, so a photo
learns that a same-type other-colour note ranks above an other-type one.

``SFTObjective`` is a plain base loss ``(embeddings, index) -> scalar`` so ``MatryoshkaLoss``
can wrap it: it truncates the embedding tensors, the integer index tensors pass through.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uninote.losses import InfoNCELoss, RegionMaxSimLoss
from uninote.losses.kl import distill


def first_rows(owner: torch.Tensor, n: int) -> torch.Tensor:
    """(n,) row of each owner's first item in ``owner`` order, -1 where it has none."""
    idx = torch.arange(len(owner), device=owner.device)
    first = torch.full((n,), len(owner), dtype=torch.long, device=owner.device)
    first = first.scatter_reduce(0, owner, idx, reduce="amin")
    return torch.where(first == len(owner), torch.full_like(first, -1), first)


class SFTObjective(nn.Module):
    def __init__(self, weights: dict[str, float], temperature: float = 0.05):
        super().__init__()
        self.weights = {k: float(v) for k, v in weights.items() if v}
        self.temperature = temperature
        self.nce = InfoNCELoss(temperature)
        self.nce_sym = InfoNCELoss(temperature, symmetric=True)
        self.region_loss = RegionMaxSimLoss(temperature)
        self.last_terms: dict[str, torch.Tensor] = {}  # detached; read them only when logging (a GPU sync)

    def forward(self, emb: dict[str, torch.Tensor], idx: dict[str, torch.Tensor]) -> torch.Tensor:
        """``emb``: forward_features output over the batch's unique notes. ``idx``:
        ``q``, ``p`` (B,) note rows; ``neg`` (B, K) note rows (-1 = padding); ``in_batch_mask``
        (B, B) bool (False = known relevant, not a negative); ``region_q``/``region_p`` (B, R)
        region rows of the first photo of q / p (-1 when none)."""
        note, text, image = emb["note"], emb["text"], emb["image"]
        q, p, neg, mask = idx["q"], idx["p"], idx["neg"], idx["in_batch_mask"]
        neg_mask = neg >= 0
        negatives = note[neg.clamp(min=0)]
        first_img = first_rows(emb["image_owner"], len(note))
        q_img, p_img = first_img[q], first_img[p]
        has_q, has_both = q_img >= 0, (q_img >= 0) & (p_img >= 0)
        terms: dict[str, torch.Tensor] = {}
        if "note" in self.weights:
            terms["note"] = self.nce_sym(note[q], note[p], negatives, neg_mask, mask)
        if "text_note" in self.weights:
            terms["text_note"] = self.nce(text[q], note[p], negatives, neg_mask, mask)
        if "image_note" in self.weights and has_q.any():
            s = has_q
            terms["image_note"] = self.nce(image[q_img[s]], note[p[s]], negatives[s], neg_mask[s], mask[s][:, s])
        if "image_image" in self.weights and has_both.any():
            s = has_both
            terms["image_image"] = self.nce_sym(image[q_img[s]], image[p_img[s]], None, None, mask[s][:, s])
        owners = torch.unique(emb["image_owner"])  # notes with a photo, sorted
        photo = image[first_img[owners]]  # each one's first photo
        if "image_text" in self.weights and len(owners):
            terms["image_text"] = self.nce_sym(photo, text[owners])
        if self.weights.keys() & {"image_note_kd", "image_image_kd"} and len(owners):
            teacher = (note[owners] @ note.T).detach()  # each note's ranking of every batch note
            itself = F.one_hot(owners, len(note)).bool()
            if "image_note_kd" in self.weights:
                terms["image_note_kd"] = distill(photo @ note.T, teacher, itself, self.temperature)
            if "image_image_kd" in self.weights:
                terms["image_image_kd"] = distill(photo @ photo.T, teacher[:, owners], itself[:, owners],
                                                  self.temperature)
        if "region" in self.weights and len(emb["region"]) and "region_q" in idx:
            rq, rp = idx["region_q"], idx["region_p"]
            valid = (rq >= 0).all(1) & (rp >= 0).all(1)
            region = emb["region"]
            terms["region"] = self.region_loss(region[rq.clamp(min=0)], region[rp.clamp(min=0)], valid, mask)
        self.last_terms = {k: v.detach() for k, v in terms.items()}
        total = sum(self.weights[k] * v for k, v in terms.items())
        return total if isinstance(total, torch.Tensor) else note.sum() * 0.0
