"""PyTorch eager references for benchmarks/run.py: the FSD code's CKA (explicit centering
matrices) and the VKD / FSD-IL train step on transformers' BERT."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np


def reference_cka(threads: int | None = None):
    """The FSD repository's CKA loss (maroo-sky/FSD: metrics/LayerWiseMetrics.py): n×n
    centering matrix H, HSIC = tr(K H L H) / (n − 1)², ``−log(mean |CKA| + 1e-8)``.

    Returns ``(forward(t, s), value_and_grad(t, s), name)``: the second also back-propagates
    to ``s`` (the student side, as training does). With ``threads``, each call first sets
    PyTorch's thread count. NumPy (forward only, value_and_grad None) without PyTorch.
    """
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:

        def hsic(k, l_):
            n = k.shape[-1]
            h = torch.eye(n) - torch.ones(n, n) / n
            return torch.diagonal(k @ h @ l_ @ h, dim1=-2, dim2=-1).sum(-1) / (n - 1) ** 2

        def loss(x, y):
            k, l_ = x @ x.transpose(-1, -2), y @ y.transpose(-1, -2)
            cka = hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_))
            return -torch.log(cka.abs().mean() + 1e-8)

        def forward(t, s):
            if threads:
                torch.set_num_threads(threads)
            with torch.no_grad():
                return loss(torch.as_tensor(t), torch.as_tensor(s))

        def value_and_grad(t, s):
            if threads:
                torch.set_num_threads(threads)
            t, s = torch.as_tensor(t), torch.as_tensor(s).detach().requires_grad_(True)
            value = loss(t, s)
            value.backward()
            return value, s.grad

        count = threads or torch.get_num_threads()
        return forward, value_and_grad, f"PyTorch eager {torch.__version__}, {count} threads"

    def forward_np(x, y):
        n = x.shape[-2]
        h = np.eye(n) - 1.0 / n
        k, l_ = x @ np.swapaxes(x, -1, -2), y @ np.swapaxes(y, -1, -2)

        def hs(a, c):
            return np.trace(a @ h @ c @ h, axis1=-2, axis2=-1) / (n - 1) ** 2

        return -np.log(np.abs(hs(k, l_) / np.sqrt(hs(k, k) * hs(l_, l_))).mean() + 1e-8)

    return forward_np, None, "NumPy (torch not installed)"


def make_torch_step(models, fsd_il_weights: dict[str, float]) -> Callable[[dict, bool, int], None]:
    """``step(batch, fsd, threads)``: one VKD (``fsd=False``) or FSD-IL AdamW step of a
    transformers BertForSequenceClassification student against its teacher, in PyTorch eager
    with ``threads`` threads.

    ``models`` is ``load_models``'s tuple: the same MiniLM weights when it names a checkpoint,
    else same-shape random models. The losses are those of the JAX configs: 0.5·CE +
    0.5·T²·KL at T = 5, plus the weighted masked-CKA FSD intra and local terms on the
    penultimate layer.
    """
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import BertConfig as TorchBertConfig
    from transformers import BertForSequenceClassification as TorchBert

    transformers.logging.set_verbosity_error()  # the student load reports skipped layers
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(os.cpu_count() or 1)
    teacher, _, student, _, hf_dir = models
    n_s = student.config.num_hidden_layers
    if hf_dir is not None:
        t_model = TorchBert.from_pretrained(str(hf_dir), num_labels=2)
        s_model = TorchBert.from_pretrained(str(hf_dir), num_labels=2, num_hidden_layers=n_s)
    else:
        c = teacher.config
        cfg = TorchBertConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.hidden_size,
            num_hidden_layers=c.num_hidden_layers,
            num_attention_heads=c.num_attention_heads,
            intermediate_size=c.intermediate_size,
            num_labels=2,
        )
        t_model = TorchBert(cfg)
        s_model = TorchBert(TorchBertConfig(**{**cfg.to_dict(), "num_hidden_layers": n_s}))
    t_model.eval()
    s_model.train()
    opt = torch.optim.AdamW(s_model.parameters(), lr=5e-5, weight_decay=0.0)

    def centered_gram(x, w):
        """Gram matrices (..., m, m) of rows of x (..., m, p) centred over rows with weight w."""
        mean = (w[..., None] * x).sum(-2, keepdim=True) / w.sum(-1)[..., None, None]
        x = (x - mean) * w[..., None]
        return x @ x.transpose(-1, -2)

    def cka_from_grams(k, l_):
        hsic = lambda a, c: (a * c).sum((-1, -2))  # noqa: E731
        return hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_) + 1e-20)

    def intra(t_h, s_h, mask):
        m = mask.float()  # per example, over its real tokens
        v = cka_from_grams(centered_gram(s_h, m), centered_gram(t_h, m))
        return (-torch.log(torch.abs(v) + 1e-8)).mean()

    def local(t_h, s_h, mask):
        m = mask.float()[..., None]
        b = t_h.shape[0]
        ones = torch.ones(b)
        v = cka_from_grams(
            centered_gram((s_h * m).reshape(b, -1), ones),
            centered_gram((t_h * m).reshape(b, -1), ones),
        )
        return -torch.log(torch.abs(v) + 1e-8)

    def step(batch, fsd: bool, threads: int):
        torch.set_num_threads(threads)
        ids = torch.from_numpy(batch["input_ids"]).long()
        mask = torch.from_numpy(batch["attention_mask"]).long()
        labels = torch.from_numpy(batch["labels"]).long()
        with torch.no_grad():
            t_out = t_model(input_ids=ids, attention_mask=mask, output_hidden_states=fsd)
        s_out = s_model(input_ids=ids, attention_mask=mask, output_hidden_states=fsd)
        temp = 5.0
        kd = F.kl_div(
            F.log_softmax(s_out.logits / temp, -1),
            F.softmax(t_out.logits / temp, -1),
            reduction="batchmean",
        ) * (temp**2)
        loss = 0.5 * F.cross_entropy(s_out.logits, labels) + 0.5 * kd
        if fsd:
            th, sh = t_out.hidden_states[-2], s_out.hidden_states[-2]
            loss = loss + fsd_il_weights["intra"] * intra(th, sh, mask)
            loss = loss + fsd_il_weights["local"] * local(th, sh, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(s_model.parameters(), 1.0)
        opt.step()

    return step
