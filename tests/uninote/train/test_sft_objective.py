import torch
import torch.nn.functional as F

from uninote.losses.kl import distill
from uninote.train.sft_objective import SFTObjective


def test_distill_is_zero_only_when_the_student_ranks_like_the_teacher():
    torch.manual_seed(0)
    teacher = torch.randn(4, 6)
    skip = F.one_hot(torch.arange(4), 6).bool()
    assert distill(teacher.clone(), teacher, skip, 0.05).abs() < 1e-6
    assert distill(teacher + 3.0, teacher, skip, 0.05).abs() < 1e-5  # a shift per row is the same ranking
    assert distill(torch.randn(4, 6), teacher, skip, 0.05) > 0.01


def test_distill_ignores_the_skipped_cells():
    torch.manual_seed(0)
    teacher, student = torch.randn(3, 5), torch.randn(3, 5)
    skip = F.one_hot(torch.tensor([0, 1, 2]), 5).bool()
    moved = student.masked_fill(skip, 99.0)
    assert torch.allclose(distill(student, teacher, skip, 0.1), distill(moved, teacher, skip, 0.1))


def _batch(n_notes=6, dim=8):
    torch.manual_seed(1)
    unit = lambda *s: F.normalize(torch.randn(*s), dim=-1)  # noqa: E731
    emb = {"note": unit(n_notes, dim).requires_grad_(), "text": unit(n_notes, dim),
           "image": unit(n_notes, dim).requires_grad_(), "image_owner": torch.arange(n_notes),
           "region": torch.zeros(0, dim)}
    idx = {"q": torch.tensor([0, 1, 2]), "p": torch.tensor([3, 4, 5]), "neg": torch.full((3, 1), -1),
           "in_batch_mask": torch.ones(3, 3, dtype=torch.bool)}
    return emb, idx


def test_the_distillation_terms_teach_the_photos_and_leave_the_teacher_alone():
    emb, idx = _batch()
    objective = SFTObjective({"image_note_kd": 1.0, "image_image_kd": 1.0})
    loss = objective(emb, idx)
    assert set(objective.last_terms) == {"image_note_kd", "image_image_kd"}
    assert all(v > 0 for v in objective.last_terms.values())
    loss.backward()
    assert emb["image"].grad.abs().sum() > 0
    # a photo equal to its note already ranks as the note does: nothing left to learn
    emb["image"] = emb["note"].detach().clone()
    objective(emb, idx)
    assert max(objective.last_terms.values()) < 1e-5
